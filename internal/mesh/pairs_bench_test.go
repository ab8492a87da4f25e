package mesh

import (
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/apply"
	"github.com/spirefed/spire-federation-operator/internal/plan"
	"github.com/spirefed/spire-federation-operator/internal/spireaccess"
)

// benchMesh is a full mesh of zones whose every pair is applied and
// current, as one pass of the reconciler sees it.
type benchMesh struct {
	members  Members
	observed *Observation
	plan     plan.Plan
}

// newBenchMesh builds a full mesh of n zones, each with two X.509 and two
// JWT authorities. With spireHolds, every zone's SPIRE server holds every
// peer's current bundle; otherwise no SPIRE server is observed.
func newBenchMesh(n int, spireHolds bool) *benchMesh {
	m := &benchMesh{members: Members{}, observed: NewObservation()}
	names := make([]string, 0, n)
	for i := range n {
		name := fmt.Sprintf("zone-%03d", i)
		names = append(names, name)
		zone := &spirefedv1alpha1.ZoneTrustDomain{Spec: spirefedv1alpha1.ZoneTrustDomainSpec{TrustDomain: name + ".example.org"}}
		sequence := int64(i + 1)
		zone.Status.Bundle = &spirefedv1alpha1.BundleStatus{
			Source:   spirefedv1alpha1.BundleSourceEndpoint,
			Sequence: &sequence,
			X509Authorities: []spirefedv1alpha1.X509Authority{
				{SHA256Fingerprint: fmt.Sprintf("%064x", 2*i)},
				{SHA256Fingerprint: fmt.Sprintf("%064x", 2*i+1)},
			},
			JWTAuthorityKeyIDs: []string{name + "-k1", name + "-k2"},
		}
		zone.Status.Conditions = []metav1.Condition{
			condition(spirefedv1alpha1.ReadyCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded),
			condition(spirefedv1alpha1.BundleFetchedCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonFetched),
		}
		m.members[name] = zone
	}
	for _, name := range names {
		current := map[string]bool{}
		held := map[string]spireaccess.HeldBundle{}
		for _, peer := range names {
			if peer == name {
				continue
			}
			bundle := m.members[peer].Status.Bundle
			current[m.members[peer].Spec.TrustDomain] = true
			held[m.members[peer].Spec.TrustDomain] = spireaccess.HeldBundle{
				X509Fingerprints: []string{bundle.X509Authorities[0].SHA256Fingerprint, bundle.X509Authorities[1].SHA256Fingerprint},
				JWTKeyIDs:        bundle.JWTAuthorityKeyIDs,
			}
		}
		m.observed.Applied[name] = apply.Result{Current: current, Conflicts: map[string]string{}}
		if spireHolds {
			m.observed.SpireHeld[name] = held
		}
	}
	m.plan = plan.Plan{Links: plan.Links(spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh}, names)}
	return m
}

// BenchmarkSetPairs is the pair judgement of one pass over a 200-zone full
// mesh (39,800 pairs), starting from the bounded status of the pass before.
func BenchmarkSetPairs(b *testing.B) {
	for _, bench := range []struct {
		name       string
		spireHolds bool
	}{
		{"200zones/spireNotObserved", false},
		{"200zones/spireHoldsAll", true},
	} {
		b.Run(bench.name, func(b *testing.B) {
			m := newBenchMesh(200, bench.spireHolds)
			mesh := &spirefedv1alpha1.FederationMesh{}
			SetMembers(mesh, m.members)
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			SetPairs(mesh, m.members, m.plan, m.observed, now)
			BoundPairs(mesh)
			listed := mesh.Status.Pairs
			b.ReportAllocs()
			for b.Loop() {
				mesh.Status.Pairs = listed
				SetPairs(mesh, m.members, m.plan, m.observed, now)
			}
		})
	}
}

// BenchmarkSummarize is the summary of one pass over a 200-zone full mesh
// (39,800 pairs): every pair established, or none (no SPIRE server holds
// a bundle yet, as while a mesh comes up).
func BenchmarkSummarize(b *testing.B) {
	for _, bench := range []struct {
		name       string
		spireHolds bool
		holdNone   bool
	}{
		{"200zones/allEstablished", true, false},
		{"200zones/noneEstablished", true, true},
	} {
		b.Run(bench.name, func(b *testing.B) {
			m := newBenchMesh(200, bench.spireHolds)
			if bench.holdNone {
				for name := range m.observed.SpireHeld {
					m.observed.SpireHeld[name] = map[string]spireaccess.HeldBundle{}
				}
			}
			mesh := &spirefedv1alpha1.FederationMesh{}
			SetMembers(mesh, m.members)
			SetPairs(mesh, m.members, m.plan, m.observed, time.Now())
			b.ReportAllocs()
			for b.Loop() {
				Summarize(mesh, "")
			}
		})
	}
}
