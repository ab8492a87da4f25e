package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

func TestRecordMeshPairs(t *testing.T) {
	pair := func(from, to string, state spirefedv1alpha1.PairState) spirefedv1alpha1.PairStatus {
		return spirefedv1alpha1.PairStatus{From: from, To: to, State: state}
	}
	RecordMesh("m", nil, []spirefedv1alpha1.PairStatus{
		pair("a", "b", spirefedv1alpha1.PairConverged), pair("a", "c", spirefedv1alpha1.PairConverged),
		pair("b", "a", spirefedv1alpha1.PairPending), pair("b", "c", spirefedv1alpha1.PairStale), pair("c", "a", spirefedv1alpha1.PairConverged),
	})
	for zone, want := range map[string]float64{"a": 0, "b": 2, "c": 0} {
		if got := value(t, MeshZonePairsNotConverged.WithLabelValues("m", zone)); got != want {
			t.Errorf("zone %s: %v pairs not converged, want %v", zone, got, want)
		}
	}
	// b and c leave the mesh: their series go.
	RecordMesh("m", nil, []spirefedv1alpha1.PairStatus{pair("a", "d", spirefedv1alpha1.PairPending)})
	if got := count(MeshZonePairsNotConverged); got != 1 {
		t.Errorf("%d zone series after zones left, want 1", got)
	}
	ForgetMesh("m")
	if got := count(MeshZonePairsNotConverged); got != 0 {
		t.Errorf("%d zone series after ForgetMesh, want 0", got)
	}
}

func TestRecordHelmAction(t *testing.T) {
	// A failed install, then one that succeeds (which actions count is
	// spirehelm.Outcome.Acted's business, tested there).
	RecordHelmAction("z", "Install", "Failed")
	RecordHelmAction("z", "Install", "Succeeded")
	if got := value(t, HelmActions.WithLabelValues("z", "Install", "Failed")); got != 1 {
		t.Errorf("failed installs = %v, want 1", got)
	}
	if got := value(t, HelmActions.WithLabelValues("z", "Install", "Succeeded")); got != 1 {
		t.Errorf("succeeded installs = %v, want 1", got)
	}
	ForgetZone("z")
	if got := count(HelmActions); got != 0 {
		t.Errorf("%d Helm action series after ForgetZone, want 0", got)
	}
}

func value(t *testing.T, metric prometheus.Metric) float64 {
	t.Helper()
	out := &dto.Metric{}
	if err := metric.Write(out); err != nil {
		t.Fatal(err)
	}
	if out.Gauge != nil {
		return out.Gauge.GetValue()
	}
	return out.Counter.GetValue()
}

func count(collector prometheus.Collector) int {
	metrics := make(chan prometheus.Metric, 100)
	collector.Collect(metrics)
	close(metrics)
	return len(metrics)
}
