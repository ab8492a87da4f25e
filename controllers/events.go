package controllers

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"

	corev1 "k8s.io/api/core/v1"
)

// recordConditionEvents records an event for every condition whose status
// changed: Normal when it became True, Warning otherwise.
func recordConditionEvents(recorder events.EventRecorder, object runtime.Object, before, after []metav1.Condition) {
	for _, condition := range after {
		previous := meta.FindStatusCondition(before, condition.Type)
		if previous != nil && previous.Status == condition.Status && previous.Reason == condition.Reason {
			continue
		}
		eventType := corev1.EventTypeWarning
		if condition.Status == metav1.ConditionTrue {
			eventType = corev1.EventTypeNormal
		}
		recorder.Eventf(object, nil, eventType, condition.Reason, condition.Type, "%s", condition.Message)
	}
}
