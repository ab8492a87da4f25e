package spireaccess

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

// fakeServer is a pure unit test's SPIRE server.
type fakeServer struct {
	trustDomain string
	held        map[string]HeldBundle
	err         error
	refreshed   []string
}

func (f *fakeServer) TrustDomain(context.Context) (string, error) { return f.trustDomain, f.err }
func (f *fakeServer) FederatedBundles(context.Context) (map[string]HeldBundle, error) {
	return f.held, f.err
}
func (f *fakeServer) RefreshBundle(_ context.Context, trustDomain string) error {
	f.refreshed = append(f.refreshed, trustDomain)
	return f.err
}

func TestCombine(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := &fakeServer{trustDomain: "example.com", held: map[string]HeldBundle{
		"peer.example":  {X509Fingerprints: []string{"p1"}},
		"other.example": {X509Fingerprints: []string{"o1"}},
		"old.example":   {X509Fingerprints: []string{"n1"}},
	}}
	b := &fakeServer{trustDomain: "example.com", held: map[string]HeldBundle{
		"peer.example": {X509Fingerprints: []string{"p1"}},
		"old.example":  {X509Fingerprints: []string{"n0"}},
	}}
	if Combine(a) != Server(a) {
		t.Fatal("one server must be returned as is")
	}
	both := Combine(a, b)
	held, err := both.FederatedBundles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]HeldBundle{
		"peer.example": {X509Fingerprints: []string{"p1"}},
		"old.example":  {X509Fingerprints: []string{"n0", "n1"}},
	}
	if !reflect.DeepEqual(held, want) {
		t.Errorf("held = %+v, want %+v (only what both hold; differing authorities merged)", held, want)
	}
	if trustDomain, err := both.TrustDomain(ctx); err != nil || trustDomain != "example.com" {
		t.Errorf("TrustDomain = %q, %v", trustDomain, err)
	}
	if err := both.RefreshBundle(ctx, "old.example"); err != nil || len(a.refreshed) != 1 || len(b.refreshed) != 1 {
		t.Errorf("refresh: %v, a %v, b %v", err, a.refreshed, b.refreshed)
	}
	b.trustDomain = "other.example"
	if _, err := both.TrustDomain(ctx); err == nil {
		t.Error("servers of two trust domains must be an error")
	}
	b.err = errors.New("down")
	if _, err := both.FederatedBundles(ctx); err == nil {
		t.Error("a server that cannot be read must make the combination unreadable")
	}
}
