package controllers

import (
	"crypto/x509"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

// BenchmarkPropagation measures, on the suite's real API servers, how long
// a bundle rotation takes from the moment it is published (new CA at the
// zone's bundle endpoint and in its bootstrap ConfigMap) until every peer's
// ClusterFederatedTrustDomain carries it, in full meshes of 3 and 10 zones
// spread over the suite's three zone clusters. One op is one rotation.
//
//	go test ./controllers -run '^$' -bench Propagation -benchtime 10x
func BenchmarkPropagation(b *testing.B) {
	for _, size := range []int{3, 10} {
		b.Run(fmt.Sprintf("zones=%d", size), func(b *testing.B) {
			benchmarkPropagation(b, size)
		})
	}
}

func benchmarkPropagation(b *testing.B, size int) {
	meshName := fmt.Sprintf("bench-%d", size)
	members := make([]*federationZone, size)
	names := make([]string, size)
	for i := range members {
		names[i] = fmt.Sprintf("bench%d-%d", size, i)
		members[i] = startFederationZone(b, names[i], zoneNames[i%len(zoneNames)])
	}
	b.Cleanup(func() {
		for _, name := range names {
			_ = env.Management.Client.Delete(testCtx, &spirefedv1alpha1.ZoneTrustDomain{ObjectMeta: metav1.ObjectMeta{Name: name}})
		}
	})
	mesh := &spirefedv1alpha1.FederationMesh{
		ObjectMeta: metav1.ObjectMeta{Name: meshName},
		Spec: spirefedv1alpha1.FederationMeshSpec{
			Zones:    spirefedv1alpha1.ZoneSelection{Names: names},
			Topology: spirefedv1alpha1.Topology{Type: spirefedv1alpha1.TopologyFullMesh},
		},
	}
	if err := env.Management.Client.Create(testCtx, mesh); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { waitForDeletion(b, mesh) })
	waitForMeshCondition(b, meshName, spirefedv1alpha1.ReadyCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, "")

	rotated, peers := members[0], members[1:]
	sequence := uint64(1)
	var latencies []time.Duration
	b.ResetTimer()
	for b.Loop() {
		sequence++
		next, err := testenv.NewSPIFFECA(rotated.trustDomain())
		if err != nil {
			b.Fatal(err)
		}
		published := spiffebundle.FromX509Authorities(rotated.endpoint.TrustDomain, []*x509.Certificate{rotated.endpoint.CA.Cert, next.Cert})
		published.SetSequenceNumber(sequence)
		started := time.Now()
		rotated.endpoint.server.SetBundle(published)
		writeBundleConfigMapIn(b, rotated.cluster, "spire-"+rotated.name, string(testenv.PEM(rotated.endpoint.CA.Cert, next.Cert)))
		for _, peer := range peers {
			waitForPeerSequence(b, peer, rotated, sequence)
		}
		latencies = append(latencies, time.Since(started))
	}
	b.StopTimer()
	slices.Sort(latencies)
	b.ReportMetric(float64(latencies[len(latencies)/2].Milliseconds()), "median-ms")
	b.ReportMetric(float64(latencies[len(latencies)-1].Milliseconds()), "max-ms")
}
