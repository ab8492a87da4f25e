package bundle_test

import (
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	"github.com/spirefed/spire-federation-operator/internal/bundle"
	"github.com/spirefed/spire-federation-operator/internal/testenv"
)

func TestParseX509Authorities(t *testing.T) {
	t.Parallel()
	first, err := testenv.NewCA("first")
	if err != nil {
		t.Fatal(err)
	}
	second, err := testenv.NewCA("second")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := first.NewLeaf("leaf")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name        string
		trustDomain string
		data        []byte
		wantCount   int
		wantErr     string
	}{
		{"one CA", "zone1.example", testenv.PEM(first.Cert), 1, ""},
		{"two CAs", "zone1.example", testenv.PEM(first.Cert, second.Cert), 2, ""},
		{"empty", "zone1.example", nil, 0, "no X.509 authority"},
		{"not PEM", "zone1.example", []byte("hello"), 0, "invalid bundle"},
		{"leaf", "zone1.example", testenv.PEM(leaf), 0, "is not a CA certificate"},
		{"CA then leaf", "zone1.example", testenv.PEM(first.Cert, leaf), 0, "is not a CA certificate"},
		{"bad trust domain", "Zone1!", testenv.PEM(first.Cert), 0, "trust domain"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			parsed, _, err := bundle.ParseX509Authorities(tc.trustDomain, tc.data, bundle.Checks{})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, bundle.ErrInvalid) {
					t.Fatalf("error %v, want ErrInvalid containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := len(parsed.X509Authorities()); got != tc.wantCount {
				t.Errorf("%d authorities, want %d", got, tc.wantCount)
			}
		})
	}
}

func TestDescribeX509AuthoritiesIsOrderIndependent(t *testing.T) {
	t.Parallel()
	first, _ := testenv.NewCA("first")
	second, _ := testenv.NewCA("second")
	a := bundle.DescribeX509Authorities([]*x509.Certificate{first.Cert, second.Cert})
	b := bundle.DescribeX509Authorities([]*x509.Certificate{second.Cert, first.Cert})
	if len(a) != 2 || a[0] != b[0] || a[1] != b[1] {
		t.Errorf("descriptions differ by input order: %+v vs %+v", a, b)
	}
	if len(a[0].SHA256Fingerprint) != 64 || a[0].NotAfter.IsZero() || !strings.Contains(a[0].Subject+a[1].Subject, "CN=first") {
		t.Errorf("description incomplete: %+v", a[0])
	}
}
