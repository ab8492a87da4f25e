package meshintegration

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

// finding is one failed check: a reason and an actionable message.
type finding struct {
	reason  string
	message string
}

// precedence orders the reasons: a zone reports the first that applies.
var precedence = []string{
	spirefedv1alpha1.ReasonZoneUnreachable,
	spirefedv1alpha1.ReasonMeshNotInstalled,
	spirefedv1alpha1.ReasonSDSProfileConflict,
	spirefedv1alpha1.ReasonTrustDomainMismatch,
	spirefedv1alpha1.ReasonIstioTooOld,
	spirefedv1alpha1.ReasonSharedMeshConfigNotWired,
	spirefedv1alpha1.ReasonInjectionTemplateMissing,
	spirefedv1alpha1.ReasonMeshServicesNotExclusive,
	spirefedv1alpha1.ReasonConflict,
	spirefedv1alpha1.ReasonMeshIntegrationApplyFailed,
	spirefedv1alpha1.ReasonMeshIdentityNotReady,
	spirefedv1alpha1.ReasonPeersPending,
}

// Desired are the objects the operator writes in a zone for the
// integration; none without an integration.
func Desired(mesh string, integration *spirefedv1alpha1.MeshIntegration, zone Zone) ([]*unstructured.Unstructured, error) {
	if integration == nil {
		return nil, nil
	}
	switch integration.Type {
	case spirefedv1alpha1.MeshIstio:
		return IstioObjects(mesh, integration, zone)
	case spirefedv1alpha1.MeshKuma:
		return KumaObjects(mesh, integration, zone), nil
	}
	return nil, fmt.Errorf("unknown mesh integration type %q", integration.Type)
}

// Install is what the zone's mesh install holds: the part for the
// integration's type is read.
type Install struct {
	Istio IstioInstall
	Kuma  KumaInstall
}

// Outcome is what writing the zone's objects did.
type Outcome struct {
	// Objects the zone holds for the integration, as ObjectRef.
	Objects []string
	// Conflicts: objects in the way that the operator does not own, as
	// messages; they are left untouched.
	Conflicts []string
	// Err of the writes.
	Err error
}

// Judge reports one reachable zone: the first reason that applies, and
// every finding in the message.
func Judge(integration *spirefedv1alpha1.MeshIntegration, zone Zone, install Install, outcome Outcome) spirefedv1alpha1.ZoneMeshIntegration {
	var findings []finding
	switch integration.Type {
	case spirefedv1alpha1.MeshIstio:
		findings = checkIstio(integration, zone, install.Istio)
	case spirefedv1alpha1.MeshKuma:
		findings = checkKuma(integration, install.Kuma)
	}
	if len(zone.SDSConflicts) > 0 {
		findings = append(findings, finding{spirefedv1alpha1.ReasonSDSProfileConflict, fmt.Sprintf(
			"the zone's SPIRE agent serves all bundles under one SDS name: %s proxies ask for %q, those of mesh %s for another; neither profile is set: take the zone out of one of the meshes",
			integration.Type, SDSProfileFor(integration.Type), joinNames(zone.SDSConflicts))})
	}
	for _, conflict := range outcome.Conflicts {
		findings = append(findings, finding{spirefedv1alpha1.ReasonConflict, conflict})
	}
	if outcome.Err != nil {
		findings = append(findings, finding{spirefedv1alpha1.ReasonMeshIntegrationApplyFailed, outcome.Err.Error()})
	}
	if pending := zone.pendingPeers(); len(pending) > 0 {
		findings = append(findings, finding{spirefedv1alpha1.ReasonPeersPending, fmt.Sprintf(
			"the zone's SPIRE does not hold the bundle of %s yet: the mesh workloads' federatesWith follows when it does", joinNames(pending))})
	}
	report := spirefedv1alpha1.ZoneMeshIntegration{
		PeerTrustDomains: zone.PeerTrustDomains(),
		Objects:          slices.Sorted(slices.Values(outcome.Objects)),
	}
	if len(findings) == 0 {
		report.Ready = metav1.ConditionTrue
		report.Reason = spirefedv1alpha1.ReasonMeshIntegrated
		report.Message = readyMessage(integration.Type, zone)
		return report
	}
	slices.SortStableFunc(findings, func(a, b finding) int {
		return slices.Index(precedence, a.reason) - slices.Index(precedence, b.reason)
	})
	messages := make([]string, 0, len(findings))
	for _, f := range findings {
		messages = append(messages, f.message)
	}
	report.Ready = metav1.ConditionFalse
	report.Reason = findings[0].reason
	report.Message = shorten(strings.Join(messages, "; "), maxZoneMessage)
	return report
}

// Bounds of status messages: an Event's note (which repeats the
// condition's message) takes at most 1024 bytes.
const (
	maxZoneMessage      = 1024
	maxConditionMessage = 1000
	maxZoneDetail       = 400
)

// shorten cuts text to at most limit bytes, on a rune boundary.
func shorten(text string, limit int) string {
	if len(text) <= limit {
		return text
	}
	cut := limit - len("…")
	for cut > 0 && !utf8.RuneStart(text[cut]) {
		cut--
	}
	return text[:cut] + "…"
}

// Unreachable reports a zone whose cluster could not be read.
func Unreachable(why string) spirefedv1alpha1.ZoneMeshIntegration {
	return spirefedv1alpha1.ZoneMeshIntegration{
		Ready:   metav1.ConditionUnknown,
		Reason:  spirefedv1alpha1.ReasonZoneUnreachable,
		Message: "the zone's cluster cannot be read: " + why,
	}
}

func readyMessage(meshType spirefedv1alpha1.MeshIntegrationType, zone Zone) string {
	peers := zone.PeerTrustDomains()
	message := fmt.Sprintf("%s proxies get SPIRE identities and trust %d peer trust domains", meshType, len(peers))
	if len(peers) > 0 {
		message += " (" + joinNames(peers) + ")"
	}
	if !zone.SpireHelm {
		message += fmt.Sprintf("; SPIRE is installed externally: its agent must serve SDS with default_all_bundles_name %q%s",
			SDSProfileFor(meshType), externalSDSHint(meshType))
	}
	return message
}

func externalSDSHint(meshType spirefedv1alpha1.MeshIntegrationType) string {
	if meshType == spirefedv1alpha1.MeshIstio {
		return `, default_svid_name "default" and default_bundle_name "null"`
	}
	return ""
}

// maxConditionZones bounds the zones named in the condition's message.
const maxConditionZones = 5

// Summarize returns the MeshIntegrationReady condition from the zones'
// reports (by zone name).
func Summarize(reports map[string]spirefedv1alpha1.ZoneMeshIntegration, generation int64) metav1.Condition {
	condition := metav1.Condition{Type: spirefedv1alpha1.MeshIntegrationReadyCondition, ObservedGeneration: generation}
	names := slices.Sorted(func(yield func(string) bool) {
		for name := range reports {
			if !yield(name) {
				return
			}
		}
	})
	var failing []string
	for _, name := range names {
		if reports[name].Ready != metav1.ConditionTrue {
			failing = append(failing, name)
		}
	}
	if len(failing) == 0 {
		condition.Status = metav1.ConditionTrue
		condition.Reason = spirefedv1alpha1.ReasonMeshIntegrated
		condition.Message = fmt.Sprintf("the mesh integration is ready in all %d member zones", len(names))
		return condition
	}
	// The reason is the most fundamental one among the failing zones.
	first := failing[0]
	for _, name := range failing[1:] {
		if slices.Index(precedence, reports[name].Reason) < slices.Index(precedence, reports[first].Reason) {
			first = name
		}
	}
	condition.Status = metav1.ConditionFalse
	condition.Reason = reports[first].Reason
	// The first zone's message in full (or nearly), the others by reason.
	parts := []string{fmt.Sprintf("zone %s: %s (%s)", first, reports[first].Reason, shorten(reports[first].Message, maxZoneDetail))}
	others := 0
	for _, name := range failing {
		if name == first {
			continue
		}
		if others == maxConditionZones {
			parts = append(parts, fmt.Sprintf("%d more zones", len(failing)-1-maxConditionZones))
			break
		}
		others++
		parts = append(parts, fmt.Sprintf("zone %s: %s", name, reports[name].Reason))
	}
	condition.Message = shorten(strings.Join(parts, "; ")+"; status.zones has every zone's checks", maxConditionMessage)
	return condition
}
