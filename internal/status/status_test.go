package status

import (
	"strings"
	"testing"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestProgress(t *testing.T) {
	t.Parallel()
	stalled := map[string]bool{"KubeconfigInvalid": true}
	cases := []struct {
		name                         string
		ready                        *metav1.Condition
		wantReconciling, wantStalled bool
	}{
		{"no Ready yet", nil, false, false},
		{"ready", &metav1.Condition{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Succeeded"}, false, false},
		{"failing, retried", &metav1.Condition{Type: "Ready", Status: metav1.ConditionFalse, Reason: "EndpointUnreachable", Message: "m"}, true, false},
		{"unknown, progressing", &metav1.Condition{Type: "Ready", Status: metav1.ConditionUnknown, Reason: "Progressing", Message: "m"}, true, false},
		{"needs a human", &metav1.Condition{Type: "Ready", Status: metav1.ConditionFalse, Reason: "KubeconfigInvalid", Message: "m"}, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Both present before: the pass must leave only what applies.
			conditions := []metav1.Condition{
				{Type: "Reconciling", Status: metav1.ConditionTrue, Reason: "Old"},
				{Type: "Stalled", Status: metav1.ConditionTrue, Reason: "Old"},
			}
			if tc.ready != nil {
				conditions = append(conditions, *tc.ready)
			}
			Progress(&conditions, 7, stalled)
			reconciling := meta.FindStatusCondition(conditions, "Reconciling")
			stalledCondition := meta.FindStatusCondition(conditions, "Stalled")
			if tc.ready == nil {
				return // nothing known yet: left as it was
			}
			if (reconciling != nil) != tc.wantReconciling || (stalledCondition != nil) != tc.wantStalled {
				t.Fatalf("Reconciling %v, Stalled %v", reconciling, stalledCondition)
			}
			for _, c := range []*metav1.Condition{reconciling, stalledCondition} {
				if c != nil && (c.Reason != tc.ready.Reason || c.Message != tc.ready.Message || c.ObservedGeneration != 7) {
					t.Errorf("%s = %+v, want Ready's reason and message at generation 7", c.Type, c)
				}
			}
		})
	}
}

func TestBrief(t *testing.T) {
	t.Parallel()
	if got := Brief("short"); got != "short" {
		t.Errorf("Brief(short) = %q", got)
	}
	long := strings.Repeat("é", MaxDetail)
	got := Brief(long)
	if !utf8.ValidString(got) || len(got) > MaxDetail+len("…") || !strings.HasSuffix(got, "…") {
		t.Errorf("Brief of a long text = %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
}

func TestEventNote(t *testing.T) {
	for _, tc := range []struct {
		name    string
		message string
		want    int
	}{
		{"short message is kept", "zone z1 is Ready", len("zone z1 is Ready")},
		{"at the limit is kept", strings.Repeat("a", maxEventNote), maxEventNote},
		{"longer is cut to the limit", strings.Repeat("a", 5000), maxEventNote},
		{"a rune is not split", strings.Repeat("ü", 1000), maxEventNote - 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			note := eventNote(tc.message)
			if len(note) != tc.want || !utf8.ValidString(note) {
				t.Errorf("note of %d bytes (valid UTF-8: %v), want %d", len(note), utf8.ValidString(note), tc.want)
			}
			if len(tc.message) > maxEventNote && !strings.HasSuffix(note, "...") {
				t.Errorf("cut note does not end in ...: %q", note[len(note)-10:])
			}
		})
	}
}
