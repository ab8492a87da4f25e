package bundle

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

func TestScheduleInterval(t *testing.T) {
	t.Parallel()
	schedule := Schedule{DefaultInterval: 5 * time.Minute, MinInterval: 30 * time.Second, MaxInterval: time.Hour, RetryInterval: 30 * time.Second}
	endpointBundle := func(hint time.Duration) *spirefedv1alpha1.BundleStatus {
		return &spirefedv1alpha1.BundleStatus{Source: spirefedv1alpha1.BundleSourceEndpoint, RefreshHint: &metav1.Duration{Duration: hint}}
	}
	cases := []struct {
		name    string
		spec    *metav1.Duration
		current *spirefedv1alpha1.BundleStatus
		want    time.Duration
	}{
		{"no hint anywhere", nil, nil, 5 * time.Minute},
		{"spec hint", &metav1.Duration{Duration: 2 * time.Minute}, nil, 2 * time.Minute},
		{"the bundle's hint wins", &metav1.Duration{Duration: 2 * time.Minute}, endpointBundle(time.Minute), time.Minute},
		{"a bootstrap bundle's hint does not count", nil, &spirefedv1alpha1.BundleStatus{Source: spirefedv1alpha1.BundleSourceConfigMap, RefreshHint: &metav1.Duration{Duration: time.Minute}}, 5 * time.Minute},
		{"clamped up", nil, endpointBundle(time.Second), 30 * time.Second},
		{"clamped down", nil, endpointBundle(1000 * time.Hour), time.Hour},
	}
	for _, tc := range cases {
		if got := schedule.Interval(tc.spec, tc.current); got != tc.want {
			t.Errorf("%s: Interval = %s, want %s", tc.name, got, tc.want)
		}
	}
	if got := schedule.AfterFailure(time.Hour); got > 30*time.Second || got < 27*time.Second {
		t.Errorf("AfterFailure = %s, want 27-30s", got)
	}
	hinted := spiffebundle.New(spiffeid.RequireTrustDomainFromString("a.example"))
	hinted.SetRefreshHint(10 * time.Minute)
	if got := schedule.AfterSuccess(hinted, time.Hour); got > 10*time.Minute || got < 9*time.Minute {
		t.Errorf("AfterSuccess = %s, want 9-10m", got)
	}
}

func TestDue(t *testing.T) {
	t.Parallel()
	var due Due
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if ok, _ := due.Check("z", "in", "out", now); !ok {
		t.Error("a zone never fetched is not due")
	}
	due.Record("z", "in", "out", now, time.Minute)
	if ok, wait := due.Check("z", "in", "out", now.Add(10*time.Second)); ok || wait != 50*time.Second {
		t.Errorf("Check before the time = %v, %s", ok, wait)
	}
	if ok, _ := due.Check("z", "other inputs", "out", now.Add(10*time.Second)); !ok {
		t.Error("changed inputs are not due at once")
	}
	if ok, _ := due.Check("z", "in", "stale status", now.Add(10*time.Second)); !ok {
		t.Error("a status that does not show the last outcome is not due at once")
	}
	if ok, _ := due.Check("z", "in", "out", now.Add(time.Minute)); !ok {
		t.Error("not due when its time came")
	}
	due.Forget("z")
	if ok, _ := due.Check("z", "in", "out", now); !ok {
		t.Error("a forgotten zone is not due")
	}
}

var testKey = func() crypto.PublicKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return key.Public()
}()

func TestCheckSequence(t *testing.T) {
	t.Parallel()
	sequence := func(n int64) *int64 { return &n }
	fetched := func(n uint64) *spiffebundle.Bundle {
		b := spiffebundle.New(spiffeid.RequireTrustDomainFromString("a.example"))
		b.SetSequenceNumber(n)
		return b
	}
	withKey := func(n uint64, keyID string) *spiffebundle.Bundle {
		b := fetched(n)
		if err := b.AddJWTAuthority(keyID, testKey); err != nil {
			t.Fatal(err)
		}
		return b
	}
	unsequenced := spiffebundle.New(spiffeid.RequireTrustDomainFromString("a.example"))
	endpoint := func(n int64, keyIDs ...string) *spirefedv1alpha1.BundleStatus {
		return &spirefedv1alpha1.BundleStatus{Source: spirefedv1alpha1.BundleSourceEndpoint, Sequence: sequence(n), JWTAuthorityKeyIDs: keyIDs}
	}
	cases := []struct {
		name    string
		current *spirefedv1alpha1.BundleStatus
		fetched *spiffebundle.Bundle
		reset   bool
		want    string
	}{
		{"nothing accepted yet", nil, fetched(1), false, ""},
		{"higher", endpoint(3), fetched(4), false, ""},
		{"lower", endpoint(3), fetched(2), false, spirefedv1alpha1.ReasonSequenceRegressed},
		{"lower, reset requested", endpoint(3), fetched(1), true, ""},
		{"after a bootstrap bundle", &spirefedv1alpha1.BundleStatus{Source: spirefedv1alpha1.BundleSourceConfigMap}, fetched(1), false, ""},
		{"no sequence after one", endpoint(3), unsequenced, false, spirefedv1alpha1.ReasonSequenceMissing},
		{"no sequence, never had one", &spirefedv1alpha1.BundleStatus{Source: spirefedv1alpha1.BundleSourceEndpoint}, unsequenced, false, ""},
		{"same sequence, same authorities", endpoint(3, "k1"), withKey(3, "k1"), false, ""},
		{"same sequence, an authority dropped out", endpoint(3, "k1", "k2"), withKey(3, "k1"), false, ""},
		{"same sequence, a new authority", endpoint(3, "k1"), withKey(3, "k2"), false, spirefedv1alpha1.ReasonSequenceReused},
		{"sequence beyond int64 is left to Describe", endpoint(3), fetched(1 << 63), false, ""},
	}
	for _, tc := range cases {
		got := CheckSequence(tc.current, tc.fetched, tc.reset)
		switch {
		case tc.want == "" && got != nil:
			t.Errorf("%s: refused: %v", tc.name, got)
		case tc.want != "" && (got == nil || got.Reason != tc.want):
			t.Errorf("%s: CheckSequence = %v, want %s", tc.name, got, tc.want)
		}
	}
}
