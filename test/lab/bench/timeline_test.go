package main

import (
	"testing"
	"time"
)

func TestTimelineMarks(t *testing.T) {
	var timelines timelines
	// Nothing is recorded outside a rotation.
	timelines.mark(stepConfigMap, time.Now())
	current := timelines.begin()
	start := current.start
	timelines.mark(stepPrepared, start.Add(-time.Millisecond)) // before the rotation: ignored
	timelines.markAfter(stepZoneFetched, stepConfigMap, start.Add(10*time.Millisecond))
	timelines.mark(stepConfigMap, start.Add(20*time.Millisecond))
	timelines.mark(stepConfigMap, start.Add(30*time.Millisecond)) // only the first counts
	timelines.markAfter(stepZoneFetched, stepConfigMap, start.Add(40*time.Millisecond))
	timelines.pass(start.Add(50*time.Millisecond), "observe 1ms")
	timelines.end()
	timelines.mark(stepHeld, start.Add(time.Second)) // after the rotation: ignored

	done := timelines.take()
	if len(done) != 1 {
		t.Fatalf("%d timelines, want 1", len(done))
	}
	want := map[string]time.Duration{stepConfigMap: 20 * time.Millisecond, stepZoneFetched: 40 * time.Millisecond}
	if len(done[0].marks) != len(want) {
		t.Errorf("marks %v, want %v", done[0].marks, want)
	}
	for step, at := range want {
		if done[0].marks[step] != at {
			t.Errorf("%s at %s, want %s", step, done[0].marks[step], at)
		}
	}
	if len(done[0].passes) != 1 {
		t.Errorf("passes %v, want one", done[0].passes)
	}
	if again := timelines.take(); len(again) != 0 {
		t.Errorf("take returned %d timelines a second time", len(again))
	}
}

func TestPercentile(t *testing.T) {
	values := []time.Duration{5 * time.Second, time.Second, 3 * time.Second, 2 * time.Second, 4 * time.Second}
	for _, c := range []struct {
		p    int
		want time.Duration
	}{{50, 3 * time.Second}, {95, 5 * time.Second}, {1, time.Second}, {100, 5 * time.Second}} {
		if got := percentile(values, c.p); got != c.want {
			t.Errorf("p%d = %s, want %s", c.p, got, c.want)
		}
	}
	if median(values) != 3*time.Second {
		t.Errorf("median = %s", median(values))
	}
}
