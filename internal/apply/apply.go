// Package apply writes a zone's planned objects into the zone's cluster
// with server-side apply under one field manager, skips objects that are
// already as planned, leaves objects it does not own alone, and deletes
// only objects it owns that are no longer planned.
package apply

import (
	"context"
	"encoding/json"

	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	spirev1alpha1 "github.com/spiffe/spire-controller-manager/api/v1alpha1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/spirefed/spire-federation-operator/internal/bundle"
	"github.com/spirefed/spire-federation-operator/internal/plan"
)

// FieldManager is the one field manager of every write.
const FieldManager = "spire-federation-operator"

// Live is what one zone's cluster holds that concerns a mesh.
type Live struct {
	// FederatedTrustDomains are the ClusterFederatedTrustDomains the
	// operator owns in the cluster for the zone (any mesh) and, once
	// ReadForeign ran, those of the cluster that the operator did not
	// write (to detect conflicts).
	FederatedTrustDomains []*spirev1alpha1.ClusterFederatedTrustDomain
	// SPIFFEIDs are the ClusterSPIFFEIDs the mesh owns in the cluster for the zone.
	SPIFFEIDs []*spirev1alpha1.ClusterSPIFFEID
	// StaticEntries are the ClusterStaticEntries the mesh owns there.
	StaticEntries []*spirev1alpha1.ClusterStaticEntry
	// ForeignRead says whether FederatedTrustDomains holds the cluster's
	// objects that the operator did not write.
	ForeignRead bool

	mesh, zone string
	// ownership caches owns' answers for the objects above (nil: not
	// known yet). Live is read by one goroutine at a time.
	ownership map[metav1.Object]bool
	// settled is the apply that last found these very objects as planned
	// (Resume), or nil.
	settled *Settled
}

// OwnedLabels are the labels of every object the operator owns in a
// zone's cluster for that zone, whatever the mesh: what a zone's cache of
// owned objects selects.
func OwnedLabels(zone string) map[string]string {
	return map[string]string{plan.LabelManagedBy: plan.ManagedBy, plan.LabelZone: zone}
}

// WatchedKinds are the kinds the operator writes in every member zone's
// cluster, watched from the moment a zone connects. ClusterStaticEntries,
// which only meshes with static identities plan, are watched in a zone
// once it is to hold some or holds some (Observe).
func WatchedKinds() []client.Object {
	return []client.Object{&spirev1alpha1.ClusterFederatedTrustDomain{}, &spirev1alpha1.ClusterSPIFFEID{}}
}

// Observe reads what the zone's cluster holds for mesh and zone (a cluster
// may host several zones) from owned, a reader of the objects the operator
// owns there for the zone (the zone's cache): an observation that lists
// nothing else. An error means the state is unknown: the caller must then
// neither apply nor prune.
//
// staticEntries says whether the mesh may plan ClusterStaticEntries in the
// zone; if not, and the zone's cache does not watch them, they are read
// only if the zone holds some that the operator owns (CachedReader.Holds).
func Observe(ctx context.Context, owned client.Reader, mesh, zone string, staticEntries bool) (*Live, error) {
	// The cache's objects are read without a deep copy (a pass at 200
	// zones reads 39,800 of them): Live is read-only, and written objects
	// replace entries of its slices, never fields of cached objects.
	if cached, ok := owned.(CachedReader); ok {
		return observeCached(ctx, cached, mesh, zone, staticEntries)
	}
	zoneLabels := client.MatchingLabels(OwnedLabels(zone))
	var federated spirev1alpha1.ClusterFederatedTrustDomainList
	if err := owned.List(ctx, &federated, zoneLabels, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing ClusterFederatedTrustDomains: %w", err)
	}
	meshLabels := client.MatchingLabels{plan.LabelManagedBy: plan.ManagedBy, plan.LabelMesh: mesh, plan.LabelZone: zone}
	var ids spirev1alpha1.ClusterSPIFFEIDList
	if err := owned.List(ctx, &ids, meshLabels, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing ClusterSPIFFEIDs: %w", err)
	}
	var static spirev1alpha1.ClusterStaticEntryList
	if err := owned.List(ctx, &static, meshLabels, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing ClusterStaticEntries: %w", err)
	}
	return &Live{FederatedTrustDomains: pointers(federated.Items), SPIFFEIDs: pointers(ids.Items), StaticEntries: pointers(static.Items), mesh: mesh, zone: zone}, nil
}

// CachedReader is a reader of a cache that also hands out the cache's own
// objects of a kind: no copy, and no label selector to match (the zone's
// cache of owned objects).
type CachedReader interface {
	CachedObjects(ctx context.Context, obj client.Object) ([]any, error)
	// Holds says whether the zone may hold objects of obj's kind (list
	// is a list of that kind) that the operator owns for the zone.
	Holds(ctx context.Context, obj client.Object, list client.ObjectList) (bool, error)
}

// observeCached is Observe from the objects a cache holds.
func observeCached(ctx context.Context, owned CachedReader, mesh, zone string, staticEntries bool) (*Live, error) {
	live := &Live{mesh: mesh, zone: zone}
	zoneLabels := OwnedLabels(zone)
	meshLabels := map[string]string{plan.LabelManagedBy: plan.ManagedBy, plan.LabelMesh: mesh, plan.LabelZone: zone}
	federated, err := owned.CachedObjects(ctx, &spirev1alpha1.ClusterFederatedTrustDomain{})
	if err != nil {
		return nil, fmt.Errorf("listing ClusterFederatedTrustDomains: %w", err)
	}
	for _, object := range federated {
		if cftd, ok := object.(*spirev1alpha1.ClusterFederatedTrustDomain); ok && hasLabels(cftd.Labels, zoneLabels) {
			live.FederatedTrustDomains = append(live.FederatedTrustDomains, cftd)
		}
	}
	ids, err := owned.CachedObjects(ctx, &spirev1alpha1.ClusterSPIFFEID{})
	if err != nil {
		return nil, fmt.Errorf("listing ClusterSPIFFEIDs: %w", err)
	}
	for _, object := range ids {
		if id, ok := object.(*spirev1alpha1.ClusterSPIFFEID); ok && hasLabels(id.Labels, meshLabels) {
			live.SPIFFEIDs = append(live.SPIFFEIDs, id)
		}
	}
	if !staticEntries {
		held, err := owned.Holds(ctx, &spirev1alpha1.ClusterStaticEntry{}, &spirev1alpha1.ClusterStaticEntryList{})
		if err != nil {
			return nil, fmt.Errorf("listing ClusterStaticEntries: %w", err)
		}
		if !held {
			return live, nil
		}
	}
	static, err := owned.CachedObjects(ctx, &spirev1alpha1.ClusterStaticEntry{})
	if err != nil {
		return nil, fmt.Errorf("listing ClusterStaticEntries: %w", err)
	}
	for _, object := range static {
		if entry, ok := object.(*spirev1alpha1.ClusterStaticEntry); ok && hasLabels(entry.Labels, meshLabels) {
			live.StaticEntries = append(live.StaticEntries, entry)
		}
	}
	return live, nil
}

// ReadForeign adds to live the ClusterFederatedTrustDomains of the
// cluster that the operator did not write (no managed-by label of its
// own), read uncached through c: only needed before creating one (see
// NeedsForeign). Objects the operator wrote for other meshes of the zone
// are in live already; those it wrote for other zones of the same cluster
// are named per zone and handled by another className.
func (l *Live) ReadForeign(ctx context.Context, c client.Reader) error {
	if l.ForeignRead {
		return nil
	}
	notOurs, err := labels.Parse(plan.LabelManagedBy + "!=" + plan.ManagedBy)
	if err != nil {
		return err
	}
	var foreign spirev1alpha1.ClusterFederatedTrustDomainList
	if err := c.List(ctx, &foreign, client.MatchingLabelsSelector{Selector: notOurs}); err != nil {
		return fmt.Errorf("listing ClusterFederatedTrustDomains the operator did not write: %w", err)
	}
	l.FederatedTrustDomains = append(l.FederatedTrustDomains, pointers(foreign.Items)...)
	l.ForeignRead = true
	l.ownership, l.settled = nil, nil
	return nil
}

// NeedsForeign says whether applying zonePlan creates a
// ClusterFederatedTrustDomain the mesh does not hold yet in the zone: a
// conflict with an object the operator does not own is checked then, and
// only then. An object the mesh already owns is kept current without that
// check, so that a rotation or an idle pass lists nothing it does not own.
func NeedsForeign(live *Live, zonePlan *plan.ZonePlan) bool {
	if live.ForeignRead {
		return false
	}
	held := make(map[string]bool, len(live.FederatedTrustDomains))
	for _, cftd := range live.FederatedTrustDomains {
		if live.owns(cftd) {
			held[cftd.Name] = true
		}
	}
	for _, desired := range zonePlan.FederatedTrustDomains {
		if !held[desired.Name] {
			return true
		}
	}
	return false
}

func pointers[T any](items []T) []*T {
	out := make([]*T, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out
}

// OwnedBy says whether an object carries the ownership labels of mesh and zone.
func OwnedBy(labels map[string]string, mesh, zone string) bool {
	return labels[plan.LabelManagedBy] == plan.ManagedBy && labels[plan.LabelMesh] == mesh && labels[plan.LabelZone] == zone
}

// owns says whether the mesh owns an object in this zone. A pass asks it
// of every object several times (39,800 of them at 200 zones), so the
// answers for live's objects are kept (ownership); record and ReadForeign
// drop them when live changes.
func (l *Live) owns(obj metav1.Object) bool {
	if l.ownership == nil {
		l.ownership = make(map[metav1.Object]bool, len(l.FederatedTrustDomains)+len(l.SPIFFEIDs)+len(l.StaticEntries))
		for _, cftd := range l.FederatedTrustDomains {
			l.ownership[cftd] = OwnedBy(cftd.Labels, l.mesh, l.zone)
		}
		for _, id := range l.SPIFFEIDs {
			l.ownership[id] = OwnedBy(id.Labels, l.mesh, l.zone)
		}
		for _, entry := range l.StaticEntries {
			l.ownership[entry] = OwnedBy(entry.Labels, l.mesh, l.zone)
		}
	}
	owned, known := l.ownership[obj]
	if !known {
		return OwnedBy(obj.GetLabels(), l.mesh, l.zone)
	}
	return owned
}

// PeersWithBundle lists the trust domains for which the mesh owns a
// ClusterFederatedTrustDomain that carries a bundle: the planner's
// evidence, without SPIRE access, that the zone's SPIRE holds the bundle.
func (l *Live) PeersWithBundle() map[string]bool {
	if l.settled != nil {
		return maps.Clone(l.settled.peersWithBundle)
	}
	peers := map[string]bool{}
	for _, cftd := range l.FederatedTrustDomains {
		if l.owns(cftd) && cftd.Spec.TrustDomainBundle != "" {
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
	// Settled says the result is that of an earlier apply to the same
	// objects (Settled), reused without comparing them.
	Settled bool
}

// Diff is what it takes to make a zone's cluster hold a zone plan.
type Diff struct {
	// Writes are the objects to apply, in offboarding order:
	// ClusterSPIFFEIDs, ClusterStaticEntries, ClusterFederatedTrustDomains.
	Writes []client.Object
	// Deletes are the owned objects no longer planned, in the same order.
	Deletes []client.Object
	// Conflicts by peer trust domain (see Result).
	Conflicts map[string]string
	// Current are the peer trust domains whose planned
	// ClusterFederatedTrustDomain is already in place.
	Current map[string]bool
	// Deferred counts the owned ClusterFederatedTrustDomains kept for a
	// later pass because a ClusterSPIFFEID still federates with them.
	Deferred int
}

// Empty says whether the diff has nothing to write or delete.
func (d Diff) Empty() bool { return len(d.Writes) == 0 && len(d.Deletes) == 0 }

// ComputeDiff compares what a zone's cluster holds with the zone's plan.
// It writes an object only when it differs from the live one (bundles are
// compared by content), never one that the mesh does not own, and deletes
// only owned objects that are no longer planned. A
// ClusterFederatedTrustDomain is deleted only once no ClusterSPIFFEID read
// at the start of the pass federates with its trust domain (a later pass,
// after spire-controller-manager has seen the new federatesWith), and never
// one the plan keeps.
func ComputeDiff(live *Live, zonePlan *plan.ZonePlan) Diff {
	diff := Diff{Conflicts: map[string]string{}, Current: map[string]bool{}}
	diff.Writes = append(diff.Writes, changed(live.SPIFFEIDs, zonePlan.SPIFFEIDs, sameSPIFFEIDSpec)...)
	diff.Writes = append(diff.Writes, changed(live.StaticEntries, zonePlan.StaticEntries, sameStaticEntrySpec)...)

	others := live.notOwned()
	var federated []*spirev1alpha1.ClusterFederatedTrustDomain
	for _, desired := range zonePlan.FederatedTrustDomains {
		if message := conflict(others, desired); message != "" {
			diff.Conflicts[desired.Spec.TrustDomain] = message
			continue
		}
		federated = append(federated, desired)
	}
	federatedWrites := changed(live.FederatedTrustDomains, federated, sameFederation)
	written := make(map[string]bool, len(federatedWrites))
	for _, obj := range federatedWrites {
		written[obj.GetName()] = true
	}
	for _, desired := range federated {
		if !written[desired.Name] {
			diff.Current[desired.Spec.TrustDomain] = true
		}
	}
	diff.Writes = append(diff.Writes, federatedWrites...)

	diff.Deletes = append(diff.Deletes, unplanned(live, live.SPIFFEIDs, zonePlan.SPIFFEIDs, nil)...)
	diff.Deletes = append(diff.Deletes, unplanned(live, live.StaticEntries, zonePlan.StaticEntries, nil)...)
	federatedWith := live.FederatedWith()
	diff.Deletes = append(diff.Deletes, unplanned(live, live.FederatedTrustDomains, zonePlan.FederatedTrustDomains, func(cftd *spirev1alpha1.ClusterFederatedTrustDomain) bool {
		switch {
		case slices.Contains(zonePlan.KeepFederatedTrustDomains, cftd.Name):
			return true
		case federatedWith[cftd.Spec.TrustDomain]:
			diff.Deferred++
			return true
		}
		return false
	})...)
	return diff
}

// changed returns the desired objects that are missing from live or differ
// from it (by same, and by the ownership labels).
func changed[T client.Object](live []T, desired []T, same func(current, desired T) bool) []client.Object {
	byName := make(map[string]T, len(live))
	for _, obj := range live {
		byName[obj.GetName()] = obj
	}
	var writes []client.Object
	for _, obj := range desired {
		current, found := byName[obj.GetName()]
		if found && same(current, obj) && hasLabels(current.GetLabels(), obj.GetLabels()) {
			continue
		}
		writes = append(writes, obj)
	}
	return writes
}

// unplanned returns the live objects the mesh owns in the zone that are
// not desired, except those keep holds on to.
func unplanned[T client.Object](owner *Live, live []T, desired []T, keep func(T) bool) []client.Object {
	planned := make(map[string]bool, len(desired))
	for _, obj := range desired {
		planned[obj.GetName()] = true
	}
	var deletes []client.Object
	for _, obj := range live {
		if !owner.owns(obj) || planned[obj.GetName()] {
			continue
		}
		if keep != nil && keep(obj) {
			continue
		}
		deletes = append(deletes, obj)
	}
	return deletes
}

// Applier executes diffs: server-side apply with one field manager, and
// deletes. It makes no decision of its own.
type Applier struct{}

// Apply makes the zone's cluster hold zonePlan for mesh: it reads the
// cluster's other ClusterFederatedTrustDomains when it must create one
// (NeedsForeign), computes the diff and executes it.
func (a *Applier) Apply(ctx context.Context, c client.Client, live *Live, zonePlan *plan.ZonePlan) (Result, error) {
	if live.settled != nil && live.settled.plannedSame(zonePlan) {
		// The same live objects and the same planned ones as an apply
		// that found nothing to do (Settled).
		result := live.settled.result
		result.Settled = true
		return result, nil
	}
	if NeedsForeign(live, zonePlan) {
		if err := live.ReadForeign(ctx, c); err != nil {
			return Result{}, err
		}
	}
	diff := ComputeDiff(live, zonePlan)
	result, err := a.Execute(ctx, c, diff)
	live.record(diff.Writes[:min(result.Writes, len(diff.Writes))], err != nil)
	return result, err
}

// record updates live with the objects just written (the last one only if
// it did not fail), so that a second pass of the same reconcile plans from
// what the zone now holds.
func (l *Live) record(written []client.Object, lastFailed bool) {
	if lastFailed && len(written) > 0 {
		written = written[:len(written)-1]
	}
	if len(written) > 0 {
		l.ownership, l.settled = nil, nil
	}
	for _, obj := range written {
		switch typed := obj.(type) {
		case *spirev1alpha1.ClusterFederatedTrustDomain:
			l.FederatedTrustDomains = replaced(l.FederatedTrustDomains, typed)
		case *spirev1alpha1.ClusterSPIFFEID:
			l.SPIFFEIDs = replaced(l.SPIFFEIDs, typed)
		case *spirev1alpha1.ClusterStaticEntry:
			l.StaticEntries = replaced(l.StaticEntries, typed)
		}
	}
}

// replaced returns live with obj in place of the object of the same name,
// or added.
func replaced[T client.Object](live []T, obj T) []T {
	for i := range live {
		if live[i].GetName() == obj.GetName() {
			live[i] = obj
			return live
		}
	}
	return append(live, obj)
}

// Execute writes a diff in its order and stops at the first failed call.
func (a *Applier) Execute(ctx context.Context, c client.Client, diff Diff) (Result, error) {
	result := Result{Conflicts: diff.Conflicts, Current: maps.Clone(diff.Current), Deferred: diff.Deferred}
	for _, obj := range diff.Writes {
		result.Writes++
		// Only the answer's metadata is asked for and decoded: the planned
		// object stays as planned (Live records it), and a rotation's
		// writes do not decode a copy of the bundle each.
		answer := &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: obj.GetObjectKind().GroupVersionKind().GroupVersion().String(), Kind: obj.GetObjectKind().GroupVersionKind().Kind}}
		answer.Name = obj.GetName()
		if err := c.Patch(ctx, answer, applyPatchOf{obj}, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
			return result, fmt.Errorf("applying %T %s: %w", obj, obj.GetName(), err)
		}
		if cftd, ok := obj.(*spirev1alpha1.ClusterFederatedTrustDomain); ok {
			result.Current[cftd.Spec.TrustDomain] = true
		}
	}
	for _, obj := range diff.Deletes {
		result.Deletes++
		if err := c.Delete(ctx, obj); err != nil && !apierrors.IsNotFound(err) {
			return result, fmt.Errorf("deleting %T %s: %w", obj, obj.GetName(), err)
		}
	}
	return result, nil
}

// FederatedWith lists the trust domains the mesh's ClusterSPIFFEIDs and
// ClusterStaticEntries in the zone federated with when the zone was read.
func (l *Live) FederatedWith() map[string]bool {
	peers := map[string]bool{}
	for _, id := range l.SPIFFEIDs {
		if l.owns(id) {
			for _, trustDomain := range id.Spec.FederatesWith {
				peers[trustDomain] = true
			}
		}
	}
	for _, entry := range l.StaticEntries {
		if l.owns(entry) {
			for _, trustDomain := range entry.Spec.FederatesWith {
				peers[trustDomain] = true
			}
		}
	}
	return peers
}

// notOwned are the ClusterFederatedTrustDomains live holds that the mesh
// does not own in the zone.
func (l *Live) notOwned() []*spirev1alpha1.ClusterFederatedTrustDomain {
	var others []*spirev1alpha1.ClusterFederatedTrustDomain
	for _, cftd := range l.FederatedTrustDomains {
		if !l.owns(cftd) {
			others = append(others, cftd)
		}
	}
	return others
}

// conflict explains why the mesh must not write desired: another object
// (of others, those the mesh does not own) that the zone's
// spire-controller-manager handles (same className, or none) federates
// with the same trust domain, or another object holds the name.
func conflict(others []*spirev1alpha1.ClusterFederatedTrustDomain, desired *spirev1alpha1.ClusterFederatedTrustDomain) string {
	for _, cftd := range others {
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
	first, ok1 := canonicalBundles.of(trustDomain, a)
	second, ok2 := canonicalBundles.of(trustDomain, b)
	return ok1 && ok2 && first == second
}

// canonicalBundles remembers the canonical form of the bundles compared
// lately: after a rotation, every peer's ClusterFederatedTrustDomain of
// the rotated zone holds the same old bundle and wants the same new one,
// so a pass parses two bundles, not two per peer.
var canonicalBundles = &canonicalMemo{forms: map[bundleOf]string{}}

// maxCanonicalForms bounds the memo; it starts again empty when full.
const maxCanonicalForms = 4096

type canonicalMemo struct {
	mu    sync.Mutex
	forms map[bundleOf]string
}

// bundleOf keys the memo without joining the two strings (a bundle is
// kilobytes, and the memo is asked on every comparison of two copies).
type bundleOf struct{ trustDomain, bundleJSON string }

// of returns the canonical SPIFFE JSON of a bundle of trustDomain, and
// false when it does not parse.
func (m *canonicalMemo) of(trustDomain, bundleJSON string) (string, bool) {
	key := bundleOf{trustDomain: trustDomain, bundleJSON: bundleJSON}
	m.mu.Lock()
	canonical, known := m.forms[key]
	m.mu.Unlock()
	if known {
		return canonical, canonical != ""
	}
	canonical = canonicalForm(trustDomain, bundleJSON)
	m.mu.Lock()
	if len(m.forms) >= maxCanonicalForms {
		clear(m.forms)
	}
	m.forms[key] = canonical
	m.mu.Unlock()
	return canonical, canonical != ""
}

// canonicalForm parses a bundle and returns its canonical form, or ""
// when it does not parse.
func canonicalForm(trustDomain, bundleJSON string) string {
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil {
		return ""
	}
	parsed, err := spiffebundle.Parse(td, []byte(bundleJSON))
	if err != nil {
		return ""
	}
	canonical, err := bundle.Canonical(parsed)
	if err != nil {
		return ""
	}
	return string(canonical)
}

// sameSPIFFEIDSpec compares two ClusterSPIFFEIDs' specs. federatesWith (a
// peer per zone of the mesh) is compared first and apart: reflection over
// it dominated a large mesh's diff.
func sameSPIFFEIDSpec(current, desired *spirev1alpha1.ClusterSPIFFEID) bool {
	currentSpec, desiredSpec := current.Spec, desired.Spec
	if !slices.Equal(currentSpec.FederatesWith, desiredSpec.FederatesWith) {
		return false
	}
	currentSpec.FederatesWith, desiredSpec.FederatesWith = nil, nil
	return equality.Semantic.DeepEqual(currentSpec, desiredSpec)
}

// sameStaticEntrySpec compares two ClusterStaticEntries' specs, as
// sameSPIFFEIDSpec does.
func sameStaticEntrySpec(current, desired *spirev1alpha1.ClusterStaticEntry) bool {
	currentSpec, desiredSpec := current.Spec, desired.Spec
	if !slices.Equal(currentSpec.FederatesWith, desiredSpec.FederatesWith) {
		return false
	}
	currentSpec.FederatesWith, desiredSpec.FederatesWith = nil, nil
	return equality.Semantic.DeepEqual(currentSpec, desiredSpec)
}

func hasLabels(current, desired map[string]string) bool {
	for key, value := range desired {
		if current[key] != value {
			return false
		}
	}
	return true
}

// Patch is a server-side apply patch of a whole object, typed or
// unstructured (both marshal to the object's JSON). Use it with
// client.FieldOwner(FieldManager).
var Patch client.Patch = applyPatch{}

type applyPatch struct{}

func (applyPatch) Type() types.PatchType { return types.ApplyPatchType }

func (applyPatch) Data(obj client.Object) ([]byte, error) { return json.Marshal(obj) }

// applyPatchOf is a server-side apply patch of a whole object, whatever
// object the patch call decodes the answer into.
type applyPatchOf struct{ object client.Object }

func (applyPatchOf) Type() types.PatchType { return types.ApplyPatchType }

func (p applyPatchOf) Data(client.Object) ([]byte, error) { return json.Marshal(p.object) }

// RemoveZone deletes everything the operator wrote in a zone's cluster for
// that zone, whatever the mesh: ClusterSPIFFEIDs and ClusterStaticEntries
// first, then ClusterFederatedTrustDomains. It returns how many objects it deleted.
func (a *Applier) RemoveZone(ctx context.Context, c client.Client, zone string) (int, error) {
	selector := client.MatchingLabels{plan.LabelManagedBy: plan.ManagedBy, plan.LabelZone: zone}
	var diff Diff
	for _, list := range []client.ObjectList{&spirev1alpha1.ClusterSPIFFEIDList{}, &spirev1alpha1.ClusterStaticEntryList{}, &spirev1alpha1.ClusterFederatedTrustDomainList{}} {
		if err := c.List(ctx, list, selector); err != nil {
			return 0, fmt.Errorf("listing %T: %w", list, err)
		}
		if err := meta.EachListItem(list, func(obj runtime.Object) error {
			diff.Deletes = append(diff.Deletes, obj.(client.Object))
			return nil
		}); err != nil {
			return 0, err
		}
	}
	result, err := a.Execute(ctx, c, diff)
	return result.Deletes, err
}
