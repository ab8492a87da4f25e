package testenv

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

// ExternalZone is a ZoneTrustDomain with SPIRE installed by someone else
// (namespace spire-server, className spire-server-spire), reaching its
// cluster through the kubeconfig Secret secretName and its bundle endpoint
// at url.
func ExternalZone(name, trustDomain, secretName, url string) *spirefedv1alpha1.ZoneTrustDomain {
	return &spirefedv1alpha1.ZoneTrustDomain{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: spirefedv1alpha1.ZoneTrustDomainSpec{
			TrustDomain: trustDomain,
			ClusterName: name,
			Cluster: spirefedv1alpha1.ClusterAccess{
				KubeconfigSecretRef: &spirefedv1alpha1.KubeconfigSecretReference{Name: secretName},
			},
			Spire: spirefedv1alpha1.SpireInstallation{
				Install: spirefedv1alpha1.SpireInstallExternal, Namespace: "spire-server", ReleaseName: "spire", ClassName: "spire-server-spire",
			},
			BundleEndpoint: spirefedv1alpha1.BundleEndpoint{URL: url},
		},
	}
}
