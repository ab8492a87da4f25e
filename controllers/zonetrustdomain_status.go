package controllers

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
	"github.com/spirefed/spire-federation-operator/internal/status"
)

// zoneStalledReasons are the zone's Ready reasons that only a human can
// fix: a kubeconfig that is missing, refused or lacks a permission, and
// Helm values that conflict with the operator's.
var zoneStalledReasons = map[string]bool{
	spirefedv1alpha1.ReasonSecretNotFound:    true,
	spirefedv1alpha1.ReasonKubeconfigInvalid: true,
	spirefedv1alpha1.ReasonUnauthorized:      true,
	spirefedv1alpha1.ReasonForbidden:         true,
	spirefedv1alpha1.ReasonValuesConflict:    true,
}

// summarizeZone sets Ready, then the kstatus conditions from it.
func summarizeZone(zone *spirefedv1alpha1.ZoneTrustDomain) {
	summarizeZoneReady(zone)
	summarizeClusters(zone)
	status.Progress(&zone.Status.Conditions, zone.Generation, zoneStalledReasons)
}

// summarizeZoneReady derives Ready from ClusterReachable, SpireInstalled
// (Helm installs), BundleAvailable and BundleFetched: True when all are,
// otherwise the reason and message of the first that is not.
func summarizeZoneReady(zone *spirefedv1alpha1.ZoneTrustDomain) {
	prerequisites := []string{spirefedv1alpha1.ClusterReachableCondition}
	if zone.Spec.Spire.Install == spirefedv1alpha1.SpireInstallHelm {
		prerequisites = append(prerequisites, spirefedv1alpha1.SpireInstalledCondition)
	}
	prerequisites = append(prerequisites, spirefedv1alpha1.BundleAvailableCondition, spirefedv1alpha1.BundleFetchedCondition)
	for _, conditionType := range prerequisites {
		condition := meta.FindStatusCondition(zone.Status.Conditions, conditionType)
		if condition == nil {
			status.SetCondition(&zone.Status.Conditions, zone.Generation, spirefedv1alpha1.ReadyCondition, metav1.ConditionUnknown,
				spirefedv1alpha1.ReasonProgressing, fmt.Sprintf("%s is not known yet", conditionType))
			return
		}
		if condition.Status != metav1.ConditionTrue {
			status.SetCondition(&zone.Status.Conditions, zone.Generation, spirefedv1alpha1.ReadyCondition, metav1.ConditionFalse,
				condition.Reason, condition.Message)
			return
		}
	}
	authorities := 0
	if zone.Status.Bundle != nil {
		authorities = len(zone.Status.Bundle.X509Authorities)
	}
	status.SetCondition(&zone.Status.Conditions, zone.Generation, spirefedv1alpha1.ReadyCondition, metav1.ConditionTrue,
		spirefedv1alpha1.ReasonSucceeded, fmt.Sprintf("The zone's cluster is reachable and its bundle (%d X.509 authorities) is current", authorities))
}
