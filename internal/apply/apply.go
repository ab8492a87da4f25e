// Package apply writes a zone's planned objects into the zone's cluster
// with server-side apply under one field manager, skips objects that are
// already as planned, leaves objects it does not own alone, and deletes
// only objects it owns that are no longer planned.
package apply

import (
	"context"
	"encoding/json"

	"fmt"
	"slices"
	"sync/atomic"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	spirev1alpha1 "github.com/spiffe/spire-controller-manager/api/v1alpha1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/spirefed/spire-federation-operator/internal/bundle"
	"github.com/spirefed/spire-federation-operator/internal/plan"
)

// FieldManager is the one field manager of every write.
const FieldManager = "spire-federation-operator"

// Live is what one zone's cluster holds that concerns a mesh.
type Live struct {
	// FederatedTrustDomains are all ClusterFederatedTrustDomains of the
	// cluster, owned or not (to detect conflicts).
	FederatedTrustDomains []spirev1alpha1.ClusterFederatedTrustDomain
	// SPIFFEIDs are the ClusterSPIFFEIDs the mesh owns in the cluster for the zone.
	SPIFFEIDs []spirev1alpha1.ClusterSPIFFEID
	// StaticEntries are the ClusterStaticEntries the mesh owns there.
	StaticEntries []spirev1alpha1.ClusterStaticEntry

	mesh, zone string
}

// Observe lists what the zone's cluster holds for mesh and zone (a cluster
// may host several zones). An error means the state is unknown: the caller
// must then neither apply nor prune.
func Observe(ctx context.Context, c client.Reader, mesh, zone string) (*Live, error) {
	var federated spirev1alpha1.ClusterFederatedTrustDomainList
	if err := c.List(ctx, &federated); err != nil {
		return nil, fmt.Errorf("listing ClusterFederatedTrustDomains: %w", err)
	}
	owned := client.MatchingLabels{plan.LabelManagedBy: plan.ManagedBy, plan.LabelMesh: mesh, plan.LabelZone: zone}
	var ids spirev1alpha1.ClusterSPIFFEIDList
	if err := c.List(ctx, &ids, owned); err != nil {
		return nil, fmt.Errorf("listing ClusterSPIFFEIDs: %w", err)
	}
	var static spirev1alpha1.ClusterStaticEntryList
	if err := c.List(ctx, &static, owned); err != nil {
		return nil, fmt.Errorf("listing ClusterStaticEntries: %w", err)
	}
	return &Live{FederatedTrustDomains: federated.Items, SPIFFEIDs: ids.Items, StaticEntries: static.Items, mesh: mesh, zone: zone}, nil
}

// OwnedBy says whether an object carries the ownership labels of mesh and zone.
func OwnedBy(labels map[string]string, mesh, zone string) bool {
	return labels[plan.LabelManagedBy] == plan.ManagedBy && labels[plan.LabelMesh] == mesh && labels[plan.LabelZone] == zone
}

// owns says whether the mesh owns an object in this zone.
func (l *Live) owns(labels map[string]string) bool { return OwnedBy(labels, l.mesh, l.zone) }

// PeersWithBundle lists the trust domains for which the mesh owns a
// ClusterFederatedTrustDomain that carries a bundle: the planner's
// evidence, without SPIRE access, that the zone's SPIRE holds the bundle.
func (l *Live) PeersWithBundle() map[string]bool {
	peers := map[string]bool{}
	for _, cftd := range l.FederatedTrustDomains {
		if l.owns(cftd.Labels) && cftd.Spec.TrustDomainBundle != "" {
			peers[cftd.Spec.TrustDomain] = true
		}
	}
	return peers
}

// Result of applying one zone's plan.
type Result struct {
	// Conflicts by peer trust domain: a ClusterFederatedTrustDomain the
	// mesh does not own already federates with it; nothing was written.
	Conflicts map[string]string
	// Current are the peer trust domains whose planned object is in place
	// (unchanged or written now).
	Current map[string]bool
	// Writes and Deletes count the API calls made.
	Writes, Deletes int
	// Deferred counts the ClusterFederatedTrustDomains left for a later
	// pass because a ClusterSPIFFEID still federated with their trust
	// domain when this pass began.
	Deferred int
}

// Applier applies zone plans.
type Applier struct {
	writes atomic.Int64
}

// Writes counts every write and delete the applier made, for tests and
// benchmarks.
func (a *Applier) Writes() int64 { return a.writes.Load() }

// Apply makes the zone's cluster hold zonePlan for mesh. The order is the
// offboarding order: ClusterSPIFFEIDs first (so a departing peer leaves
// federatesWith), then ClusterFederatedTrustDomains, then deletions of
// ClusterSPIFFEIDs and finally of ClusterFederatedTrustDomains, the latter
// only once no ClusterSPIFFEID read at the start of the pass federates with
// their trust domain (a later pass, after spire-controller-manager has seen
// the new federatesWith). ClusterFederatedTrustDomains the plan keeps are
// not pruned. It stops at the first failed call.
func (a *Applier) Apply(ctx context.Context, c client.Client, live *Live, zonePlan *plan.ZonePlan) (Result, error) {
	result := Result{Conflicts: map[string]string{}, Current: map[string]bool{}}

	liveIDs := map[string]*spirev1alpha1.ClusterSPIFFEID{}
	for i := range live.SPIFFEIDs {
		liveIDs[live.SPIFFEIDs[i].Name] = &live.SPIFFEIDs[i]
	}
	for _, desired := range zonePlan.SPIFFEIDs {
		current := liveIDs[desired.Name]
		if current != nil && equality.Semantic.DeepEqual(current.Spec, desired.Spec) && hasLabels(current.Labels, desired.Labels) {
			continue
		}
		if err := a.apply(ctx, c, desired, &result); err != nil {
			return result, err
		}
	}

	liveStatic := map[string]*spirev1alpha1.ClusterStaticEntry{}
	for i := range live.StaticEntries {
		liveStatic[live.StaticEntries[i].Name] = &live.StaticEntries[i]
	}
	for _, desired := range zonePlan.StaticEntries {
		current := liveStatic[desired.Name]
		if current != nil && equality.Semantic.DeepEqual(current.Spec, desired.Spec) && hasLabels(current.Labels, desired.Labels) {
			continue
		}
		if err := a.apply(ctx, c, desired, &result); err != nil {
			return result, err
		}
	}

	liveFederated := map[string]*spirev1alpha1.ClusterFederatedTrustDomain{}
	for i := range live.FederatedTrustDomains {
		liveFederated[live.FederatedTrustDomains[i].Name] = &live.FederatedTrustDomains[i]
	}
	for _, desired := range zonePlan.FederatedTrustDomains {
		peer := desired.Spec.TrustDomain
		if message := conflict(live, desired); message != "" {
			result.Conflicts[peer] = message
			continue
		}
		current := liveFederated[desired.Name]
		if current != nil && sameFederation(current, desired) && hasLabels(current.Labels, desired.Labels) {
			result.Current[peer] = true
			continue
		}
		if err := a.apply(ctx, c, desired, &result); err != nil {
			return result, err
		}
		result.Current[peer] = true
	}

	for i := range live.SPIFFEIDs {
		id := &live.SPIFFEIDs[i]
		if live.owns(id.Labels) && !slices.ContainsFunc(zonePlan.SPIFFEIDs, func(d *spirev1alpha1.ClusterSPIFFEID) bool { return d.Name == id.Name }) {
			if err := a.delete(ctx, c, id, &result); err != nil {
				return result, err
			}
		}
	}
	for i := range live.StaticEntries {
		entry := &live.StaticEntries[i]
		if live.owns(entry.Labels) && !slices.ContainsFunc(zonePlan.StaticEntries, func(d *spirev1alpha1.ClusterStaticEntry) bool { return d.Name == entry.Name }) {
			if err := a.delete(ctx, c, entry, &result); err != nil {
				return result, err
			}
		}
	}
	federatedWith := live.FederatedWith()
	for i := range live.FederatedTrustDomains {
		cftd := &live.FederatedTrustDomains[i]
		if !live.owns(cftd.Labels) || slices.Contains(zonePlan.KeepFederatedTrustDomains, cftd.Name) ||
			slices.ContainsFunc(zonePlan.FederatedTrustDomains, func(d *spirev1alpha1.ClusterFederatedTrustDomain) bool { return d.Name == cftd.Name }) {
			continue
		}
		if federatedWith[cftd.Spec.TrustDomain] {
			result.Deferred++
			continue
		}
		if err := a.delete(ctx, c, cftd, &result); err != nil {
			return result, err
		}
	}
	return result, nil
}

// FederatedWith lists the trust domains the mesh's ClusterSPIFFEIDs and
// ClusterStaticEntries in the zone federated with when the zone was read.
func (l *Live) FederatedWith() map[string]bool {
	peers := map[string]bool{}
	for _, id := range l.SPIFFEIDs {
		if l.owns(id.Labels) {
			for _, trustDomain := range id.Spec.FederatesWith {
				peers[trustDomain] = true
			}
		}
	}
	for _, entry := range l.StaticEntries {
		if l.owns(entry.Labels) {
			for _, trustDomain := range entry.Spec.FederatesWith {
				peers[trustDomain] = true
			}
		}
	}
	return peers
}

// conflict explains why the mesh must not write desired: another object
// that the zone's spire-controller-manager handles (same className, or
// none) federates with the same trust domain, or another object holds the
// name.
func conflict(live *Live, desired *spirev1alpha1.ClusterFederatedTrustDomain) string {
	for _, cftd := range live.FederatedTrustDomains {
		if live.owns(cftd.Labels) {
			continue
		}
		sameManager := cftd.Spec.ClassName == desired.Spec.ClassName || cftd.Spec.ClassName == ""
		switch {
		case cftd.Spec.TrustDomain == desired.Spec.TrustDomain && sameManager:
			return fmt.Sprintf("ClusterFederatedTrustDomain %s, which the mesh does not own, already federates with %s; it is left untouched", cftd.Name, desired.Spec.TrustDomain)
		case cftd.Name == desired.Name:
			return fmt.Sprintf("ClusterFederatedTrustDomain %s exists and the mesh does not own it; it is left untouched", cftd.Name)
		}
	}
	return ""
}

// sameFederation compares two ClusterFederatedTrustDomains field by field,
// and their bundles by content: JSON key order and whitespace do not count.
func sameFederation(current, desired *spirev1alpha1.ClusterFederatedTrustDomain) bool {
	a, b := current.Spec, desired.Spec
	if a.TrustDomain != b.TrustDomain || a.BundleEndpointURL != b.BundleEndpointURL || a.BundleEndpointProfile != b.BundleEndpointProfile || a.ClassName != b.ClassName {
		return false
	}
	if a.TrustDomainBundle == b.TrustDomainBundle {
		return true
	}
	return sameBundle(b.TrustDomain, a.TrustDomainBundle, b.TrustDomainBundle)
}

func sameBundle(trustDomain, a, b string) bool {
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil {
		return false
	}
	first, err := spiffebundle.Parse(td, []byte(a))
	if err != nil {
		return false
	}
	second, err := spiffebundle.Parse(td, []byte(b))
	if err != nil {
		return false
	}
	firstCanonical, err1 := bundle.Canonical(first)
	secondCanonical, err2 := bundle.Canonical(second)
	return err1 == nil && err2 == nil && string(firstCanonical) == string(secondCanonical)
}

func hasLabels(current, desired map[string]string) bool {
	for key, value := range desired {
		if current[key] != value {
			return false
		}
	}
	return true
}

// applyPatch is a server-side apply patch of a whole typed object.
type applyPatch struct{}

func (applyPatch) Type() types.PatchType { return types.ApplyPatchType }

func (applyPatch) Data(obj client.Object) ([]byte, error) { return json.Marshal(obj) }

func (a *Applier) apply(ctx context.Context, c client.Client, obj client.Object, result *Result) error {
	a.writes.Add(1)
	result.Writes++
	if err := c.Patch(ctx, obj, applyPatch{}, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying %T %s: %w", obj, obj.GetName(), err)
	}
	return nil
}

func (a *Applier) delete(ctx context.Context, c client.Client, obj client.Object, result *Result) error {
	a.writes.Add(1)
	result.Deletes++
	if err := c.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting %T %s: %w", obj, obj.GetName(), err)
	}
	return nil
}

// RemoveZone deletes everything the operator wrote in a zone's cluster for
// that zone, whatever the mesh: ClusterSPIFFEIDs and ClusterStaticEntries
// first, then ClusterFederatedTrustDomains. It returns how many objects it deleted.
func (a *Applier) RemoveZone(ctx context.Context, c client.Client, zone string) (int, error) {
	selector := client.MatchingLabels{plan.LabelManagedBy: plan.ManagedBy, plan.LabelZone: zone}
	var result Result
	var ids spirev1alpha1.ClusterSPIFFEIDList
	if err := c.List(ctx, &ids, selector); err != nil {
		return 0, fmt.Errorf("listing ClusterSPIFFEIDs: %w", err)
	}
	for i := range ids.Items {
		if err := a.delete(ctx, c, &ids.Items[i], &result); err != nil {
			return result.Deletes, err
		}
	}
	var static spirev1alpha1.ClusterStaticEntryList
	if err := c.List(ctx, &static, selector); err != nil {
		return result.Deletes, fmt.Errorf("listing ClusterStaticEntries: %w", err)
	}
	for i := range static.Items {
		if err := a.delete(ctx, c, &static.Items[i], &result); err != nil {
			return result.Deletes, err
		}
	}
	var federated spirev1alpha1.ClusterFederatedTrustDomainList
	if err := c.List(ctx, &federated, selector); err != nil {
		return result.Deletes, fmt.Errorf("listing ClusterFederatedTrustDomains: %w", err)
	}
	for i := range federated.Items {
		if err := a.delete(ctx, c, &federated.Items[i], &result); err != nil {
			return result.Deletes, err
		}
	}
	return result.Deletes, nil
}
