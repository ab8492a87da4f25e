package spirehelm

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	spirefedv1alpha1 "github.com/spirefed/spire-federation-operator/api/v1alpha1"
)

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	cases := []struct {
		failures int32
		want     time.Duration
	}{{1, 10 * time.Second}, {2, 20 * time.Second}, {3, 40 * time.Second}, {6, 5 * time.Minute}, {60, 5 * time.Minute}}
	for _, tc := range cases {
		if got := RetryDelay(tc.failures, 10*time.Second, 5*time.Minute); got != tc.want {
			t.Errorf("RetryDelay(%d) = %s, want %s", tc.failures, got, tc.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	lifecycle := &Lifecycle{RetryInterval: 10 * time.Second, MaxRetryInterval: time.Minute, Clock: clocktesting.NewFakePassiveClock(now)}
	last := metav1.NewTime(now.Add(-5 * time.Second))
	cases := []struct {
		name    string
		release spirefedv1alpha1.SpireReleaseStatus
		digest  string
		want    time.Duration
	}{
		{"no failure", spirefedv1alpha1.SpireReleaseStatus{LastAttemptedDigest: "d", LastActionTime: &last}, "d", 0},
		{"one failure, 5s ago", spirefedv1alpha1.SpireReleaseStatus{Failures: 1, LastAttemptedDigest: "d", LastActionTime: &last}, "d", 5 * time.Second},
		{"two failures", spirefedv1alpha1.SpireReleaseStatus{Failures: 2, LastAttemptedDigest: "d", LastActionTime: &last}, "d", 15 * time.Second},
		{"spec changed: go ahead", spirefedv1alpha1.SpireReleaseStatus{Failures: 4, LastAttemptedDigest: "d", LastActionTime: &last}, "other", 0},
	}
	for _, tc := range cases {
		if got := lifecycle.backoff(&tc.release, tc.digest); got != tc.want {
			t.Errorf("%s: backoff = %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestFailedCountsPerDigest(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	lifecycle := &Lifecycle{RetryInterval: 10 * time.Second, MaxRetryInterval: time.Minute, Clock: clocktesting.NewFakePassiveClock(now)}
	out := Outcome{Release: spirefedv1alpha1.SpireReleaseStatus{Failures: 3, LastAttemptedDigest: "old"}}
	lifecycle.failed(&out, "new", ActionUpgrade, spirefedv1alpha1.ReasonUpgradeFailed, "boom")
	if out.Release.Failures != 1 || out.Release.LastAction != ActionUpgrade || out.Release.LastActionResult != "Failed" || out.Requeue != 10*time.Second || !out.Acted {
		t.Errorf("after a failure of a new spec: %+v, requeue %s, acted %v", out.Release, out.Requeue, out.Acted)
	}
	// A chart that cannot be read is a failure, but no Helm action.
	out.Acted = false
	lifecycle.failed(&out, "new", "", spirefedv1alpha1.ReasonChartUnavailable, "no chart")
	if out.Acted {
		t.Error("a chart that could not be read counts as a Helm action")
	}
	if out.Release.Failures != 2 || out.Installed.Reason != spirefedv1alpha1.ReasonChartUnavailable || out.Requeue != 20*time.Second {
		t.Errorf("after a second failure: %+v %s, requeue %s", out.Release, out.Installed.Reason, out.Requeue)
	}
}
