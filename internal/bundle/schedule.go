package bundle

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

// Schedule bounds how often bundle endpoints are fetched. Every field is
// required (the operator's options resolve the defaults).
type Schedule struct {
	// DefaultInterval applies when neither the bundle nor the zone gives a
	// refresh hint (SPIRE's default is 5m).
	DefaultInterval time.Duration
	// MinInterval and MaxInterval clamp every refresh hint.
	MinInterval time.Duration
	MaxInterval time.Duration
	// RetryInterval after a failed fetch, at most the refresh interval.
	RetryInterval time.Duration
}

// Interval is a zone's refresh interval: the hint of the bundle accepted
// from its endpoint, else the zone's spec hint, else DefaultInterval,
// clamped to [MinInterval, MaxInterval].
func (s Schedule) Interval(specHint *metav1.Duration, current *spirefedv1alpha1.BundleStatus) time.Duration {
	interval := s.DefaultInterval
	if specHint != nil && specHint.Duration > 0 {
		interval = specHint.Duration
	}
	if current != nil && current.Source == spirefedv1alpha1.BundleSourceEndpoint && current.RefreshHint != nil && current.RefreshHint.Duration > 0 {
		interval = current.RefreshHint.Duration
	}
	return s.clamp(interval)
}

// AfterFailure is when to fetch again after a failed or refused fetch.
func (s Schedule) AfterFailure(interval time.Duration) time.Duration {
	return Jitter(min(interval, s.RetryInterval))
}

// AfterSuccess is when to fetch again after accepting fetched: its own
// refresh hint (clamped), or interval when it has none.
func (s Schedule) AfterSuccess(fetched *spiffebundle.Bundle, interval time.Duration) time.Duration {
	return Jitter(ClampRefreshHint(fetched, interval, s.MinInterval, s.MaxInterval))
}

func (s Schedule) clamp(interval time.Duration) time.Duration {
	return min(max(interval, s.MinInterval), s.MaxInterval)
}

// Jitter spreads fetches and resyncs by up to a tenth of the interval,
// earlier: zones created together do not come due together.
func Jitter(interval time.Duration) time.Duration {
	if interval <= 0 {
		return interval
	}
	return interval - time.Duration(rand.Int64N(int64(interval)/10+1))
}

// Due remembers, per zone, when its endpoint is to be fetched next, so
// that a reconcile caused by something else (a health probe, a resync)
// does not fetch again early. A zone is due when it was never fetched,
// when what authenticates its endpoint changed (the zone's spec, or its
// bootstrap authorities), when the zone's status does not show the outcome
// of the last fetch (a stale read, or a status write that was lost), or
// when its time has come.
type Due struct {
	mu    sync.Mutex
	zones map[string]dueEntry
}

type dueEntry struct {
	inputs, outcome string
	next            time.Time
}

// Check says whether a zone's endpoint is to be fetched now, and if not,
// how long until it is. inputs identifies what the fetch depends on;
// outcome is what the zone's status shows of the last fetch.
func (d *Due) Check(zone, inputs, outcome string, now time.Time) (bool, time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	entry, known := d.zones[zone]
	if !known || entry.inputs != inputs || entry.outcome != outcome || !now.Before(entry.next) {
		return true, 0
	}
	return false, entry.next.Sub(now)
}

// Record notes a fetch, the outcome status now shows of it, and when the
// next one is due.
func (d *Due) Record(zone, inputs, outcome string, now time.Time, after time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.zones == nil {
		d.zones = map[string]dueEntry{}
	}
	d.zones[zone] = dueEntry{inputs: inputs, outcome: outcome, next: now.Add(after)}
}

// Forget drops a deleted zone.
func (d *Due) Forget(zone string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.zones, zone)
}
