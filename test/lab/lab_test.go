package lab

import (
	"context"
	"testing"
	"time"
)

// TestLab runs the lab of make demo until the broker web app has fetched
// quotes from the stockmarket zone over mTLS, federated by the operator.
func TestLab(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := Run(ctx, Options{Addr: "127.0.0.1:0", Out: testWriter{t}, Check: true, KubeconfigDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
