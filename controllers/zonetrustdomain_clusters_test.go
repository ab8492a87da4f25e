package controllers

import (
	"errors"
	"testing"

	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/bundle"
	"github.com/spirefed/spire-federation-operator/internal/zones"
)

// TestClusterStatuses checks, without a cluster, how what was observed of
// a nested or HA trust domain's clusters becomes status.clusters and Ready.
func TestClusterStatuses(t *testing.T) {
	rootCA, otherCA := []byte("root-ca"), []byte("other-ca")
	withBundle := func(zone *spirefedv1alpha1.ZoneTrustDomain) *spirefedv1alpha1.ZoneTrustDomain {
		zone.Status.Bundle = &spirefedv1alpha1.BundleStatus{X509Authorities: []spirefedv1alpha1.X509Authority{{SHA256Fingerprint: bundle.FingerprintDER(rootCA)}}}
		zone.Status.Conditions = []metav1.Condition{{Type: ready, Status: metav1.ConditionTrue, Reason: spirefedv1alpha1.ReasonSucceeded, Message: "current"}}
		return zone
	}
	own := func(ders ...[]byte) *types.Bundle {
		b := &types.Bundle{TrustDomain: "example.com"}
		for _, der := range ders {
			b.X509Authorities = append(b.X509Authorities, &types.X509Certificate{Asn1: der})
		}
		return b
	}
	cluster := func(name string, role spirefedv1alpha1.ClusterRole) zones.Cluster {
		return zones.Cluster{Name: name, Role: role, View: &spirefedv1alpha1.ZoneTrustDomain{}}
	}
	cases := []struct {
		name         string
		observations []*clusterObservation
		wantReasons  []string
		wantReady    string
	}{
		{
			name: "nested: a child holding the root's CA is attested, one without is not",
			observations: []*clusterObservation{
				{cluster: cluster("root", spirefedv1alpha1.RoleRoot)},
				{cluster: cluster("c1", spirefedv1alpha1.RoleChild), observed: true, own: own(rootCA)},
				{cluster: cluster("c2", spirefedv1alpha1.RoleChild), observed: true, own: own(otherCA)},
			},
			wantReasons: []string{"Healthy", "Healthy", "NotAttested"},
			wantReady:   "True/Succeeded/current; degraded: c2 (NotAttested)",
		},
		{
			name: "nested: no child healthy",
			observations: []*clusterObservation{
				{cluster: cluster("root", spirefedv1alpha1.RoleRoot)},
				{cluster: cluster("c1", spirefedv1alpha1.RoleChild), accessReason: spirefedv1alpha1.ReasonSecretNotFound, accessMessage: "gone"},
			},
			wantReasons: []string{"Healthy", "SecretNotFound"},
			wantReady:   "False/NoHealthyCluster/No cluster of the trust domain can issue: c1 (SecretNotFound); status.clusters says why",
		},
		{
			name: "HA: cross-linked sides are healthy",
			observations: []*clusterObservation{
				{cluster: cluster("a", spirefedv1alpha1.RoleSide), observed: true, own: own(rootCA, otherCA)},
				{cluster: cluster("b", spirefedv1alpha1.RoleSide), observed: true, own: own(otherCA, rootCA)},
			},
			wantReasons: []string{"Healthy", "Healthy"},
			wantReady:   "True/Succeeded/current",
		},
		{
			name: "HA: side A down, B carries on",
			observations: []*clusterObservation{
				{cluster: cluster("a", spirefedv1alpha1.RoleSide), observed: true, spireErr: errors.New("connection refused")},
				{cluster: cluster("b", spirefedv1alpha1.RoleSide), observed: true, own: own(otherCA, rootCA)},
			},
			wantReasons: []string{"SpireUnreachable", "Healthy"},
			wantReady:   "True/Succeeded/current; degraded: a (SpireUnreachable)",
		},
		{
			name: "HA: a side lacking the other's authorities is not cross-linked",
			observations: []*clusterObservation{
				{cluster: cluster("a", spirefedv1alpha1.RoleSide), observed: true, own: own(rootCA)},
				{cluster: cluster("b", spirefedv1alpha1.RoleSide), observed: true, own: own(otherCA, rootCA)},
			},
			wantReasons: []string{"NotCrossLinked", "Healthy"},
			wantReady:   "True/Succeeded/current; degraded: a (NotCrossLinked)",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			zone := withBundle(&spirefedv1alpha1.ZoneTrustDomain{})
			zone.Status.Clusters = clusterStatuses(zone, tc.observations)
			for i, cluster := range zone.Status.Clusters {
				if cluster.Reason != tc.wantReasons[i] {
					t.Errorf("cluster %s: reason %s (%s), want %s", cluster.Name, cluster.Reason, cluster.Message, tc.wantReasons[i])
				}
			}
			summarizeClusters(zone)
			readyCondition := meta.FindStatusCondition(zone.Status.Conditions, ready)
			if got := string(readyCondition.Status) + "/" + readyCondition.Reason + "/" + readyCondition.Message; got != tc.wantReady {
				t.Errorf("Ready = %q, want %q", got, tc.wantReady)
			}
		})
	}
}

// TestFetchURL checks which endpoint an HA trust domain is fetched from.
func TestFetchURL(t *testing.T) {
	zone := &spirefedv1alpha1.ZoneTrustDomain{Spec: spirefedv1alpha1.ZoneTrustDomainSpec{
		BundleEndpoint: spirefedv1alpha1.BundleEndpoint{URL: "https://spec"},
		Spire: spirefedv1alpha1.SpireInstallation{Shape: spirefedv1alpha1.ShapeHA, HA: &spirefedv1alpha1.HASpire{
			A: spirefedv1alpha1.HASide{BundleEndpointURL: "https://a"}, B: spirefedv1alpha1.HASide{BundleEndpointURL: "https://b"},
		}},
	}}
	side := func(name, reason string) spirefedv1alpha1.TrustDomainClusterStatus {
		return spirefedv1alpha1.TrustDomainClusterStatus{Name: name, Role: spirefedv1alpha1.RoleSide, Reason: reason}
	}
	for _, tc := range []struct {
		clusters []spirefedv1alpha1.TrustDomainClusterStatus
		last     string
		want     string
	}{
		{nil, "", "https://spec"},
		{[]spirefedv1alpha1.TrustDomainClusterStatus{side("a", "Healthy"), side("b", "Healthy")}, "https://b", "https://a"},
		{[]spirefedv1alpha1.TrustDomainClusterStatus{side("a", "SpireUnreachable"), side("b", "Healthy")}, "https://a", "https://b"},
		{[]spirefedv1alpha1.TrustDomainClusterStatus{side("a", "SpireUnreachable"), side("b", "Unreachable")}, "https://b", "https://b"},
	} {
		zone.Status.Clusters, zone.Status.BundleEndpointURL = tc.clusters, tc.last
		if got := fetchURL(zone); got != tc.want {
			t.Errorf("clusters %v, last %q: fetchURL = %q, want %q", tc.clusters, tc.last, got, tc.want)
		}
	}
	zone.Spec.Spire.Shape, zone.Spec.Spire.HA = spirefedv1alpha1.ShapeSingle, nil
	if got := fetchURL(zone); got != "https://spec" {
		t.Errorf("a single zone is fetched from %q, want its spec's", got)
	}
}
