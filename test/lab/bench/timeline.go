package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	spirev1alpha1 "github.com/spiffe/spire-controller-manager/api/v1alpha1"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

// The steps of a rotation's timeline, in the order they happen.
const (
	stepPrepared     = "prepare returned (SPIRE's datastore holds the new authority)"
	stepConfigMap    = "bundle ConfigMap updated (SPIRE's k8sbundle notifier)"
	stepZoneFetched  = "zone reconciled (operator fetched the bundle endpoint)"
	stepZoneStatus   = "zone status shows the new bundle"
	stepCFTD         = "peer's ClusterFederatedTrustDomain written"
	stepRefreshAsked = "refresh request to the peer's SPIRE answered"
	stepHeld         = "peer's SPIRE server holds the new authority"
)

var timelineSteps = []string{stepPrepared, stepConfigMap, stepZoneFetched, stepZoneStatus, stepCFTD, stepRefreshAsked, stepHeld}

// timeline records when each step of one rotation was first seen, from the
// moment the rotation started, and the mesh passes that ran meanwhile.
type timeline struct {
	mu     sync.Mutex
	start  time.Time
	marks  map[string]time.Duration
	passes []string
}

// timelines collects the timeline of the rotation under way: the watches
// and the operator's log mark steps on the current one.
type timelines struct {
	mu      sync.Mutex
	current *timeline
	done    []*timeline
}

// begin starts the timeline of a new rotation.
func (t *timelines) begin() *timeline {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.current = &timeline{start: time.Now(), marks: map[string]time.Duration{}}
	return t.current
}

// end closes the current timeline.
func (t *timelines) end() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.current != nil {
		t.done = append(t.done, t.current)
		t.current = nil
	}
}

// locked returns the current timeline, locked (the caller unlocks it), or
// nil between rotations.
func (t *timelines) locked() *timeline {
	t.mu.Lock()
	current := t.current
	t.mu.Unlock()
	if current != nil {
		current.mu.Lock()
	}
	return current
}

// mark records the first time step was seen in the current rotation.
func (t *timelines) mark(step string, at time.Time) {
	t.markAfter(step, "", at)
}

// markAfter marks step only once the step before it was seen: a zone is
// reconciled every few seconds, the one that matters follows the
// ConfigMap's change.
func (t *timelines) markAfter(step, before string, at time.Time) {
	current := t.locked()
	if current == nil {
		return
	}
	defer current.mu.Unlock()
	if _, prerequisite := current.marks[before]; before != "" && !prerequisite {
		return
	}
	if _, seen := current.marks[step]; !seen && !at.Before(current.start) {
		current.marks[step] = at.Sub(current.start)
	}
}

// pass records a mesh pass of the current rotation (its phases).
func (t *timelines) pass(at time.Time, phases string) {
	current := t.locked()
	if current == nil {
		return
	}
	defer current.mu.Unlock()
	if !at.Before(current.start) {
		current.passes = append(current.passes, fmt.Sprintf("ended at %s: %s", at.Sub(current.start).Round(time.Millisecond), phases))
	}
}

// take returns the finished timelines and forgets them.
func (t *timelines) take() []*timeline {
	t.mu.Lock()
	defer t.mu.Unlock()
	done := t.done
	t.done = nil
	return done
}

// printTimelines writes the median time of each step (and the median time
// since the step before), each rotation's time of it, and the mesh passes.
func printTimelines(title string, done []*timeline) {
	if len(done) == 0 {
		return
	}
	fmt.Printf("\ntimeline of a rotation, %s (time since `localauthority x509 prepare` started; median of %d rotations, and each):\n", title, len(done))
	previous := time.Duration(0)
	for _, step := range timelineSteps {
		var at []time.Duration
		for _, rotation := range done {
			if mark, ok := rotation.marks[step]; ok {
				at = append(at, mark)
			}
		}
		if len(at) == 0 {
			fmt.Printf("  %-72s not seen\n", step)
			continue
		}
		m := median(at)
		each := make([]string, len(at))
		for i, value := range at {
			each[i] = value.Round(time.Millisecond).String()
		}
		fmt.Printf("  %-72s %8s (+%s)  [%s]\n", step, m.Round(time.Millisecond), (m - previous).Round(time.Millisecond), strings.Join(each, " "))
		previous = m
	}
	for i, rotation := range done {
		for _, pass := range rotation.passes {
			fmt.Printf("  rotation %d, mesh pass %s\n", i+1, pass)
		}
	}
}

// watchRotation marks, for a rotation in zone rotating (trust domain
// trustDomain) seen by peer, the steps visible in the API servers: the
// rotating zone's bundle ConfigMap, its ZoneTrustDomain's status, and the
// peer's ClusterFederatedTrustDomain. It returns when ctx ends.
func watchRotation(ctx context.Context, t *timelines, scheme *runtime.Scheme, management, rotatingCluster, peerCluster *rest.Config,
	rotating, trustDomain, configMapNamespace, configMapName string) error {
	watches := []struct {
		cluster *rest.Config
		list    client.ObjectList
		opts    []client.ListOption
		changed func(before, after runtime.Object) string
	}{
		{rotatingCluster, &corev1.ConfigMapList{}, []client.ListOption{client.InNamespace(configMapNamespace), client.MatchingFields{"metadata.name": configMapName}},
			func(before, after runtime.Object) string {
				if before == nil || before.(*corev1.ConfigMap).Data["bundle.crt"] != after.(*corev1.ConfigMap).Data["bundle.crt"] {
					return stepConfigMap
				}
				return ""
			}},
		{management, &spirefedv1alpha1.ZoneTrustDomainList{}, []client.ListOption{client.MatchingFields{"metadata.name": rotating}},
			func(before, after runtime.Object) string {
				digest := func(object runtime.Object) string {
					if object == nil || object.(*spirefedv1alpha1.ZoneTrustDomain).Status.Bundle == nil {
						return ""
					}
					return object.(*spirefedv1alpha1.ZoneTrustDomain).Status.Bundle.Digest
				}
				if digest(before) != digest(after) {
					return stepZoneStatus
				}
				return ""
			}},
		{peerCluster, &spirev1alpha1.ClusterFederatedTrustDomainList{}, nil,
			func(before, after runtime.Object) string {
				cftd := after.(*spirev1alpha1.ClusterFederatedTrustDomain)
				if cftd.Spec.TrustDomain != trustDomain {
					return ""
				}
				if before == nil || before.(*spirev1alpha1.ClusterFederatedTrustDomain).Spec.TrustDomainBundle != cftd.Spec.TrustDomainBundle {
					return stepCFTD
				}
				return ""
			}},
	}
	errs := make(chan error, len(watches))
	for _, w := range watches {
		go func() {
			errs <- watchChanges(ctx, scheme, w.cluster, w.list, w.opts, func(before, after runtime.Object) {
				if step := w.changed(before, after); step != "" {
					t.mark(step, time.Now())
				}
			})
		}()
	}
	var first error
	for range watches {
		if err := <-errs; err != nil && first == nil && ctx.Err() == nil {
			first = err
		}
	}
	return first
}

// watchChanges calls changed with the previous and new version of every
// object the watch reports, until ctx ends (watches that end are opened
// again).
func watchChanges(ctx context.Context, scheme *runtime.Scheme, cluster *rest.Config, list client.ObjectList, opts []client.ListOption, changed func(before, after runtime.Object)) error {
	c, err := client.NewWithWatch(cluster, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("creating a watch client: %w", err)
	}
	last := map[string]runtime.Object{}
	for ctx.Err() == nil {
		w, err := c.Watch(ctx, list, opts...)
		if err != nil {
			return fmt.Errorf("watching %T: %w", list, err)
		}
		for event := range w.ResultChan() {
			if event.Type != watch.Added && event.Type != watch.Modified {
				continue
			}
			object, ok := event.Object.(client.Object)
			if !ok {
				continue
			}
			before := last[object.GetName()]
			last[object.GetName()] = object
			if before != nil || event.Type == watch.Modified {
				changed(before, object)
			}
		}
		w.Stop()
	}
	return nil
}

// operatorLog records, from the operator's log, the steps only the
// operator sees: the rotating zone's reconcile, the refresh requests it
// sends, and the phases of every mesh pass. It is a zap core teed beside
// the operator's own (which writes only errors).
type operatorLog struct {
	timelines *timelines
	rotating  string
	fields    []zapcore.Field
}

func (o operatorLog) Enabled(level zapcore.Level) bool { return level >= zapcore.DebugLevel }

func (o operatorLog) With(fields []zapcore.Field) zapcore.Core {
	return operatorLog{timelines: o.timelines, rotating: o.rotating, fields: append(slices.Clone(o.fields), fields...)}
}

func (o operatorLog) Check(entry zapcore.Entry, checked *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	switch entry.Message {
	case "Reconciled zone", "Asked SPIRE to refresh a peer's bundle", "Reconciled mesh":
		return checked.AddCore(entry, o)
	}
	return checked
}

func (o operatorLog) Write(entry zapcore.Entry, fields []zapcore.Field) error {
	encoder := zapcore.NewMapObjectEncoder()
	for _, field := range append(slices.Clone(o.fields), fields...) {
		field.AddTo(encoder)
	}
	values := encoder.Fields
	switch entry.Message {
	case "Reconciled zone":
		if fmt.Sprint(values["name"]) == o.rotating {
			o.timelines.markAfter(stepZoneFetched, stepConfigMap, entry.Time)
		}
	case "Asked SPIRE to refresh a peer's bundle":
		o.timelines.mark(stepRefreshAsked, entry.Time)
	case "Reconciled mesh":
		var phases []string
		for _, phase := range []string{"observe", "plan", "apply", "spire", "cleanup"} {
			phases = append(phases, phase+" "+fmt.Sprint(values[phase]))
		}
		o.timelines.pass(entry.Time, strings.Join(phases, ", "))
	}
	return nil
}

func (o operatorLog) Sync() error { return nil }
