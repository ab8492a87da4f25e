package apply

import (
	"context"
	"errors"
	"testing"

	spirev1alpha1 "github.com/spiffe/spire-controller-manager/api/v1alpha1"

	"github.com/spirefed/spire-federation-operator/internal/plan"
)

// TestSettled checks when an apply is remembered as settled, and that a
// later pass reuses its conclusion only for the very same objects.
func TestSettled(t *testing.T) {
	liveOf := func(objects ...*spirev1alpha1.ClusterFederatedTrustDomain) *Live {
		return &Live{FederatedTrustDomains: objects, SPIFFEIDs: []*spirev1alpha1.ClusterSPIFFEID{held}, mesh: "m", zone: "a"}
	}
	toB, toC := cftd("a-b", "b.example", bundleA, owned("")), cftd("a-c", "c.example", bundleA, owned(""))
	zonePlan := &plan.ZonePlan{Zone: "a", FederatedTrustDomains: []*spirev1alpha1.ClusterFederatedTrustDomain{toB, toC}, SPIFFEIDs: []*spirev1alpha1.ClusterSPIFFEID{held}}
	clean := Result{Current: map[string]bool{"b.example": true, "c.example": true}}

	t.Run("only an apply that found nothing to do", func(t *testing.T) {
		for name, result := range map[string]Result{
			"write": {Writes: 1}, "delete": {Deletes: 1}, "deferred": {Deferred: 1},
			"conflict": {Conflicts: map[string]string{"b.example": "held by another"}},
		} {
			if Settle(liveOf(toB, toC), zonePlan, result, nil) != nil {
				t.Errorf("%s: settled", name)
			}
		}
		if Settle(liveOf(toB, toC), zonePlan, clean, errors.New("refused")) != nil {
			t.Error("error: settled")
		}
		foreign := liveOf(toB, toC)
		foreign.ForeignRead = true
		if Settle(foreign, zonePlan, clean, nil) != nil {
			t.Error("objects the operator does not own read: settled")
		}
	})

	settled := Settle(liveOf(toB, toC), zonePlan, clean, nil)
	if settled == nil {
		t.Fatal("a clean apply is not settled")
	}
	t.Run("the same objects resume it", func(t *testing.T) {
		live := liveOf(toC, toB) // another order, as a cache lists them
		if !live.Resume(settled) {
			t.Fatal("not resumed")
		}
		if peers := live.PeersWithBundle(); !peers["b.example"] || !peers["c.example"] {
			t.Errorf("peers with bundle %v", peers)
		}
		// No client: a write or a read would panic.
		result, err := (&Applier{}).Apply(context.Background(), nil, live, zonePlan)
		if err != nil || !result.Current["b.example"] || result.Writes != 0 {
			t.Errorf("result %+v, error %v", result, err)
		}
		if !result.Settled {
			t.Error("the result does not say it was reused")
		}
		// The planner builds identities again on every pass.
		rebuilt := &plan.ZonePlan{Zone: "a", FederatedTrustDomains: zonePlan.FederatedTrustDomains, SPIFFEIDs: []*spirev1alpha1.ClusterSPIFFEID{held.DeepCopy()}}
		if !settled.plannedSame(rebuilt) {
			t.Error("an equal identity built again is another plan")
		}
		rebuilt.SPIFFEIDs[0].Spec.FederatesWith = []string{"b.example"}
		if settled.plannedSame(rebuilt) {
			t.Error("an identity with another federatesWith is the same plan")
		}
		if Settle(live, zonePlan, result, nil) != settled {
			t.Error("a resumed apply is remembered again")
		}
	})
	t.Run("anything else compares again", func(t *testing.T) {
		for name, live := range map[string]*Live{
			"an equal copy":   liveOf(toB, toC.DeepCopy()),
			"one object less": liveOf(toB),
			"one object more": liveOf(toB, toC, cftd("a-d", "d.example", bundleA, owned(""))),
		} {
			if live.Resume(settled) {
				t.Errorf("%s: resumed", name)
			}
		}
		live := liveOf(toB, toC)
		live.Resume(settled)
		replanned := &plan.ZonePlan{Zone: "a", FederatedTrustDomains: []*spirev1alpha1.ClusterFederatedTrustDomain{toB, toC.DeepCopy()}, SPIFFEIDs: zonePlan.SPIFFEIDs}
		if settled.plannedSame(replanned) {
			t.Error("a new planned object is the same plan")
		}
		if diff := ComputeDiff(live, replanned); !diff.Empty() {
			t.Errorf("an equal plan has writes %v", names(diff.Writes))
		}
	})
}

var held = spiffeID("id", "b.example", "c.example")
