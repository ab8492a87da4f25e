// Package v1alpha1 contains the v1alpha1 API of the spirefed.io group:
// ZoneTrustDomain (one zone of a SPIRE federation) and FederationMesh (a set
// of zones federated under one topology).
//
// +kubebuilder:object:generate=true
// +groupName=spirefed.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is group version used to register these objects.
	GroupVersion = schema.GroupVersion{Group: "spirefed.io", Version: "v1alpha1"}

	// SchemeBuilder is used to add go types to the GroupVersionKind scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the types in this group-version to the given scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
