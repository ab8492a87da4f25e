package zones

import (
	"strings"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

// ClusterSeparator joins a zone's name and the name of one of its clusters
// in the name of that cluster's view ("broker/cluster-a"). A
// ZoneTrustDomain's name cannot hold it, so a view never collides with a
// zone.
const ClusterSeparator = "/"

// Cluster is one cluster (or HA side) of a zone's trust domain.
type Cluster struct {
	// Name is "" for a Single zone's cluster, "root", a nested child's name,
	// or "a" / "b".
	Name string
	// Role of the cluster; "" for a Single zone.
	Role spirefedv1alpha1.ClusterRole
	// View is the zone as seen from this cluster: a copy whose
	// spec.cluster and spec.spire (namespace, className, serverAccess) are
	// this cluster's, named <zone>/<cluster> (the zone itself for a Single
	// zone and for a nested root). Connect and ServerFor take it.
	View *spirefedv1alpha1.ZoneTrustDomain
	// IDPath is inserted after the trust domain in the SPIFFE IDs of this
	// cluster's workloads.
	IDPath string
}

// Clusters lists the clusters of a zone's trust domain: its own cluster for
// shape Single; the root's cluster and every child for Nested; sides A and
// B for HA. It has no side effects.
func Clusters(zone *spirefedv1alpha1.ZoneTrustDomain) []Cluster {
	spire := zone.Spec.Spire
	switch {
	case spire.Shape == spirefedv1alpha1.ShapeNested && spire.Nested != nil:
		clusters := []Cluster{{Name: "root", Role: spirefedv1alpha1.RoleRoot, View: zone}}
		for _, child := range spire.Nested.Children {
			view := clusterView(zone, child.Name, child.Cluster, child.Spire, spire.Namespace)
			clusters = append(clusters, Cluster{Name: child.Name, Role: spirefedv1alpha1.RoleChild, View: view, IDPath: child.IDPath})
		}
		return clusters
	case spire.Shape == spirefedv1alpha1.ShapeHA && spire.HA != nil:
		clusters := make([]Cluster, 0, 2)
		for _, side := range []struct {
			name string
			side spirefedv1alpha1.HASide
		}{{"a", spire.HA.A}, {"b", spire.HA.B}} {
			access := zone.Spec.Cluster
			if side.side.Cluster != nil {
				access = *side.side.Cluster
			}
			view := clusterView(zone, side.name, access, side.side.Spire, spire.Namespace+"-"+side.name)
			if side.side.Spire.ClassName == "" {
				// Helm: both sides' controller managers serve the zone's
				// className, so that sides sharing a cluster share its
				// objects.
				view.Spec.Spire.ClassName = zone.SpireClassName()
			}
			view.Spec.BundleEndpoint.URL = side.side.BundleEndpointURL
			clusters = append(clusters, Cluster{Name: side.name, Role: spirefedv1alpha1.RoleSide, View: view})
		}
		return clusters
	default:
		return []Cluster{{View: zone}}
	}
}

// clusterView is the zone as seen from one of its clusters.
func clusterView(zone *spirefedv1alpha1.ZoneTrustDomain, name string, access spirefedv1alpha1.ClusterAccess, spire spirefedv1alpha1.ClusterSpire, defaultNamespace string) *spirefedv1alpha1.ZoneTrustDomain {
	view := zone.DeepCopy()
	view.Name = zone.Name + ClusterSeparator + name
	view.Spec.ClusterName = name
	view.Spec.Cluster = *access.DeepCopy()
	view.Spec.Spire.Shape = spirefedv1alpha1.ShapeSingle
	view.Spec.Spire.Nested = nil
	view.Spec.Spire.HA = nil
	view.Spec.Spire.Namespace = defaultNamespace
	if spire.Namespace != "" {
		view.Spec.Spire.Namespace = spire.Namespace
	}
	view.Spec.Spire.ClassName = spire.ClassName
	if spire.ClassName == "" {
		view.Spec.Spire.ClassName = view.Spec.Spire.Namespace + "-" + view.Spec.Spire.ReleaseName
	}
	view.Spec.Spire.ServerAccess = spire.ServerAccess.DeepCopy()
	// The bootstrap ConfigMap of a view is in its own SPIRE namespace.
	view.Spec.BootstrapBundle.ConfigMap.Namespace = ""
	return view
}

// FederationTarget is one cluster that receives a zone's federation
// objects (ClusterFederatedTrustDomains, ClusterSPIFFEIDs), with the SPIRE
// servers there that act on them.
type FederationTarget struct {
	// Cluster to write to.
	Cluster Cluster
	// Servers are the views of the SPIRE servers that consume the objects:
	// one, or both HA sides when they share a cluster.
	Servers []*spirefedv1alpha1.ZoneTrustDomain
}

// FederationTargets says which clusters of a zone receive the federation
// objects: every cluster of Clusters, once per distinct cluster and
// className (HA sides in one cluster share one set of objects). The
// objects a peer needs for the zone stay one ClusterFederatedTrustDomain
// per trust domain, whatever the shape.
func FederationTargets(zone *spirefedv1alpha1.ZoneTrustDomain) []FederationTarget {
	var targets []FederationTarget
	for _, cluster := range Clusters(zone) {
		shared := false
		for i := range targets {
			if sameCluster(targets[i].Cluster.View, cluster.View) && targets[i].Cluster.View.SpireClassName() == cluster.View.SpireClassName() {
				targets[i].Servers = append(targets[i].Servers, cluster.View)
				shared = true
				break
			}
		}
		if !shared {
			targets = append(targets, FederationTarget{Cluster: cluster, Servers: []*spirefedv1alpha1.ZoneTrustDomain{cluster.View}})
		}
	}
	return targets
}

// sameCluster says whether two views reach the same cluster the same way.
func sameCluster(a, b *spirefedv1alpha1.ZoneTrustDomain) bool {
	ca, cb := a.Spec.Cluster, b.Spec.Cluster
	if ca.Local || cb.Local {
		return ca.Local == cb.Local
	}
	if ca.KubeconfigSecretRef == nil || cb.KubeconfigSecretRef == nil {
		return false
	}
	keyOf := func(key string) string {
		if key == "" {
			return "value"
		}
		return key
	}
	return ca.KubeconfigSecretRef.Name == cb.KubeconfigSecretRef.Name && keyOf(ca.KubeconfigSecretRef.Key) == keyOf(cb.KubeconfigSecretRef.Key)
}

// ZoneOf is the name of the zone a registry name belongs to: the name
// itself, or the part before ClusterSeparator for a cluster's view.
func ZoneOf(name string) string {
	zone, _, _ := strings.Cut(name, ClusterSeparator)
	return zone
}
