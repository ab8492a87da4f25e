package mesh

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/status"
)

// Summarize sets the mesh's Converged, Ready, Reconciling and Stalled
// conditions from
// ZonesResolved, the member zones and the pairs (call SetMembers and
// SetPairs first). blocker is WriteBlocker's reason, or "". A mesh being
// deleted is Ready=False, Deleting, until it has left every zone in
// status.appliedZones.
//
// Converged is True when every pair is Converged; Unknown (SpireNotObserved)
// when every pair is written and current but some cannot be checked in
// SPIRE; False otherwise. Ready is True when every member zone is Ready and
// every pair is established (Converged, or written and current where SPIRE
// is not observed).
func Summarize(mesh *spirefedv1alpha1.FederationMesh, blocker string) {
	summarizeReady(mesh, blocker)
	status.Progress(&mesh.Status.Conditions, mesh.Generation, stalledReasons)
}

// stalledReasons are the mesh's Ready reasons that only a human can fix.
var stalledReasons = map[string]bool{
	spirefedv1alpha1.ReasonZoneNotFound:         true,
	spirefedv1alpha1.ReasonHubNotMember:         true,
	spirefedv1alpha1.ReasonLinkNotMember:        true,
	spirefedv1alpha1.ReasonDuplicateTrustDomain: true,
}

func summarizeReady(mesh *spirefedv1alpha1.FederationMesh, blocker string) {
	conditions := &mesh.Status.Conditions
	set := func(conditionType string, conditionStatus metav1.ConditionStatus, reason, message string) {
		status.SetCondition(conditions, mesh.Generation, conditionType, conditionStatus, reason, message)
	}
	if !mesh.DeletionTimestamp.IsZero() {
		set(spirefedv1alpha1.ReadyCondition, metav1.ConditionFalse, spirefedv1alpha1.ReasonDeleting,
			fmt.Sprintf("Waiting to remove the mesh's objects from %d zones, %s (unreachable, or offboarding in order)",
				len(mesh.Status.AppliedZones), firstNames(mesh.Status.AppliedZones, maxNamedZones)))
		return
	}
	resolved := meta.FindStatusCondition(*conditions, spirefedv1alpha1.ZonesResolvedCondition)
	if resolved == nil {
		return
	}
	if resolved.Status != metav1.ConditionTrue {
		message := resolved.Message
		if blocker != "" {
			message += "; nothing is written or removed in the zones until this is fixed"
		}
		set(spirefedv1alpha1.ConvergedCondition, metav1.ConditionFalse, resolved.Reason, message)
		set(spirefedv1alpha1.ReadyCondition, metav1.ConditionFalse, resolved.Reason, resolved.Message)
		return
	}

	total := int32(len(mesh.Status.Pairs))
	var established, notObserved int32
	for _, pair := range mesh.Status.Pairs {
		switch {
		case pair.State == spirefedv1alpha1.PairConverged:
			established++
		case unobserved(pair):
			established++
			notObserved++
		}
	}
	pairsMessage := fmt.Sprintf("%d of %d pairs are established; %s", established, total, describeProblemPairs(mesh.Status.Pairs))
	switch {
	case established < total:
		set(spirefedv1alpha1.ConvergedCondition, metav1.ConditionFalse, spirefedv1alpha1.ReasonPairsNotEstablished, pairsMessage)
	case notObserved > 0:
		set(spirefedv1alpha1.ConvergedCondition, metav1.ConditionUnknown, spirefedv1alpha1.ReasonSpireNotObserved,
			fmt.Sprintf("All %d pairs are written and current; %d of them cannot be checked in SPIRE (no SPIRE access configured)", total, notObserved))
	default:
		set(spirefedv1alpha1.ConvergedCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded, fmt.Sprintf("All %d pairs are converged", total))
	}

	var notReady []string
	for _, member := range mesh.Status.Zones {
		if member.Ready != metav1.ConditionTrue {
			notReady = append(notReady, member.Name)
		}
	}
	switch {
	case len(notReady) > 0:
		set(spirefedv1alpha1.ReadyCondition, metav1.ConditionFalse, spirefedv1alpha1.ReasonZonesNotReady,
			fmt.Sprintf("%d of %d zones are Ready; not Ready: %s", mesh.Status.ReadyZones, mesh.Status.TotalZones, strings.Join(notReady, ", ")))
	case established < total:
		set(spirefedv1alpha1.ReadyCondition, metav1.ConditionFalse, spirefedv1alpha1.ReasonPairsNotEstablished, pairsMessage)
	default:
		set(spirefedv1alpha1.ReadyCondition, metav1.ConditionTrue, spirefedv1alpha1.ReasonSucceeded,
			fmt.Sprintf("All %d member zones are Ready and all %d pairs are established", mesh.Status.TotalZones, total))
	}
}

// maxNamedZones bounds the zones a message names: a condition's message
// is also an Event's note, which the API server limits to 1,024 bytes.
const maxNamedZones = 10

// firstNames names at most limit names, and counts the others.
func firstNames(names []string, limit int) string {
	if len(names) <= limit {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:limit], ", "), len(names)-limit)
}
