// Package status holds what both kinds' reconcilers share to report: setting
// conditions stamped with the object's generation, shortening error text for
// a message, recording an Event for every condition that changed, and
// patching status once per reconcile when it changed.
package status

import (
	"context"
	"fmt"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// SetCondition sets a condition stamped with the object's generation.
func SetCondition(conditions *[]metav1.Condition, generation int64, conditionType string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(conditions, metav1.Condition{
		Type:               conditionType,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: generation,
	})
}

// MaxDetail bounds the error text a message carries: a mesh has many
// pairs, and status must stay small.
const MaxDetail = 300

// Brief shortens an error text for a status message, on a rune boundary.
func Brief(detail string) string {
	if len(detail) <= MaxDetail {
		return detail
	}
	cut := MaxDetail
	for cut > 0 && !utf8.RuneStart(detail[cut]) {
		cut--
	}
	return detail[:cut] + "…"
}

// Object is a kind whose status carries conditions.
type Object interface {
	client.Object
	GetConditions() []metav1.Condition
}

// Patch writes after's status when it differs from before's (a merge patch
// of the status subresource), then records an Event for every condition
// that changed. statusOf returns an object's status for the comparison. An
// object deleted meanwhile is not an error.
func Patch[T Object](ctx context.Context, c client.Client, recorder events.EventRecorder, before, after T, statusOf func(T) any) error {
	if equality.Semantic.DeepEqual(statusOf(before), statusOf(after)) {
		return nil
	}
	if err := c.Status().Patch(ctx, after, client.MergeFrom(before)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("writing status of %s: %w", after.GetName(), err)
	}
	RecordConditionEvents(recorder, after, before.GetConditions(), after.GetConditions())
	return nil
}

// RecordConditionEvents records an Event for every condition whose status
// or reason changed: Normal when it became True, Warning otherwise.
func RecordConditionEvents(recorder events.EventRecorder, object runtime.Object, before, after []metav1.Condition) {
	for _, condition := range after {
		previous := meta.FindStatusCondition(before, condition.Type)
		if previous != nil && previous.Status == condition.Status && previous.Reason == condition.Reason {
			continue
		}
		eventType := corev1.EventTypeWarning
		if condition.Status == metav1.ConditionTrue {
			eventType = corev1.EventTypeNormal
		}
		recorder.Eventf(object, nil, eventType, condition.Reason, condition.Type, "%s", eventNote(condition.Message))
	}
}

// Progress sets the kstatus conditions from Ready (set it first): none
// when Ready is True; Stalled=True when Ready's reason is one of stalled
// (only a human can fix it); Reconciling=True otherwise. Both carry
// Ready's reason and message, so kstatus-based tools (Flux health checks,
// kpt, Argo CD) tell "still working" from "stuck".
func Progress(conditions *[]metav1.Condition, generation int64, stalled map[string]bool) {
	ready := meta.FindStatusCondition(*conditions, readyCondition)
	switch {
	case ready == nil || ready.Status == metav1.ConditionTrue:
		meta.RemoveStatusCondition(conditions, reconcilingCondition)
		meta.RemoveStatusCondition(conditions, stalledCondition)
	case stalled[ready.Reason]:
		meta.RemoveStatusCondition(conditions, reconcilingCondition)
		SetCondition(conditions, generation, stalledCondition, metav1.ConditionTrue, ready.Reason, ready.Message)
	default:
		meta.RemoveStatusCondition(conditions, stalledCondition)
		SetCondition(conditions, generation, reconcilingCondition, metav1.ConditionTrue, ready.Reason, ready.Message)
	}
}

// The condition types Progress reads and writes (the API's constants;
// repeated here so that this package does not depend on the API).
const (
	readyCondition       = "Ready"
	reconcilingCondition = "Reconciling"
	stalledCondition     = "Stalled"
)

// maxEventNote is the API server's limit on an Event's note.
const maxEventNote = 1024

// eventNote is message cut to what an Event may hold (the condition keeps
// the whole message): the API server refuses a longer note, and the Event
// would be lost.
func eventNote(message string) string {
	if len(message) <= maxEventNote {
		return message
	}
	const ellipsis = "..."
	cut := maxEventNote - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(message[cut]) {
		cut--
	}
	return message[:cut] + ellipsis
}
