package controllers

import (
	"testing"
	"time"
)

func TestRefreshLimiter(t *testing.T) {
	start := time.Date(2026, 11, 30, 4, 0, 0, 0, time.UTC)
	pair := refreshKey{mesh: "m", from: "broker", peer: "stockmarket.example"}
	other := refreshKey{mesh: "m", from: "stockmarket", peer: "broker.example"}
	steps := []struct {
		name   string
		key    refreshKey
		digest string
		after  time.Duration
		want   bool
	}{
		{"first request", pair, "d1", 0, true},
		{"same bundle within the interval", pair, "d1", time.Second, false},
		{"another pair", other, "d1", time.Second, true},
		{"a rotation within the interval", pair, "d2", 1500 * time.Millisecond, true},
		{"the rotated bundle again within the interval", pair, "d2", 2 * time.Second, false},
		{"the rotated bundle after the interval", pair, "d2", 7 * time.Second, true},
		{"back to an older bundle within the interval", pair, "d1", 8 * time.Second, true},
	}
	var limiter refreshLimiter
	for _, step := range steps {
		if got := limiter.allow(step.key, step.digest, start.Add(step.after), 5*time.Second); got != step.want {
			t.Errorf("%s: allow = %v, want %v", step.name, got, step.want)
		}
	}
	if len(limiter.last) != 2 {
		t.Errorf("the limiter remembers %d requests, want one per pair (2)", len(limiter.last))
	}
	limiter.forget("m")
	if len(limiter.last) != 0 {
		t.Errorf("forget left %d requests", len(limiter.last))
	}
}
