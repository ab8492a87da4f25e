package zones

import (
	authorizationv1 "k8s.io/api/authorization/v1"
)

// newAccessReview asks whether the caller may get ConfigMaps in namespace,
// which the operator needs to read the zone's bootstrap bundle.
func newAccessReview(namespace string) *authorizationv1.SelfSubjectAccessReview {
	return &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: namespace,
				Verb:      "get",
				Resource:  "configmaps",
			},
		},
	}
}
