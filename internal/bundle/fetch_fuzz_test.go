package bundle

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzCheckRedirect: the redirect policy follows at most maxRedirects hops,
// only to https URLs with a host and no user information, whatever the
// target, and never panics.
func FuzzCheckRedirect(f *testing.F) {
	for _, seed := range []struct {
		target string
		hops   uint8
	}{
		{"https://bundle.zone1.example:8443/", 0}, {"http://bundle.zone1.example/", 1}, {"https://user:pw@b.example/", 1},
		{"https:///path", 1}, {"https://b.example/", 4}, {"HTTPS://B.EXAMPLE/", 2}, {"//b.example/", 1}, {"https://:443/", 1},
		{"https://[::1]:8443/", 3}, {"file:///etc/passwd", 0},
	} {
		f.Add(seed.target, seed.hops)
	}
	const maxRedirects = 3
	f.Fuzz(func(t *testing.T, target string, hops uint8) {
		next, err := http.NewRequest(http.MethodGet, target, nil)
		if err != nil {
			return
		}
		via := make([]*http.Request, int(hops))
		err = checkRedirect(next, via, maxRedirects)
		if err != nil {
			if !errors.Is(err, ErrResponse) {
				t.Fatalf("refusal %v does not wrap ErrResponse", err)
			}
			return
		}
		again, err := url.Parse(next.URL.String())
		if hops > maxRedirects || err != nil || again.Scheme != "https" || again.Hostname() == "" || again.User != nil {
			t.Fatalf("followed hop %d to %q (%+v)", hops, target, next.URL)
		}
	})
}

func TestCheckRedirect(t *testing.T) {
	t.Parallel()
	for target, want := range map[string]string{
		"https://bundle.zone1.example:8443/b":  "",
		"http://bundle.zone1.example/":         "not https",
		"https://user:pw@bundle.zone1.example": "carries user information",
		"https:///bundle":                      "no host",
		"https://:8443/bundle":                 "no host",
	} {
		next, err := http.NewRequest(http.MethodGet, target, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = checkRedirect(next, make([]*http.Request, 1), 3)
		if (want == "") != (err == nil) || err != nil && (!errors.Is(err, ErrResponse) || !strings.Contains(err.Error(), want)) {
			t.Errorf("redirect to %s: %v, want %q", target, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("error shows the password: %v", err)
		}
	}
	next, _ := http.NewRequest(http.MethodGet, "https://bundle.zone1.example/", nil)
	if err := checkRedirect(next, make([]*http.Request, 4), 3); err == nil || !strings.Contains(err.Error(), "more than 3 redirects") {
		t.Errorf("fourth redirect: %v", err)
	}
}
