package site

import "testing"

// TestHostMatches: host patterns compare as Caddy's host matcher does:
// whole names regardless of case, a * standing for one label.
func TestHostMatches(t *testing.T) {
	for _, tc := range []struct {
		pattern, host string
		want          bool
	}{
		{"www.example.com", "www.example.com", true},
		{"WWW.Example.com", "www.example.COM", true},
		{"www.example.com", "example.com", false},
		{"*.example.com", "www.example.com", true},
		{"*.example.com", "a.b.example.com", false},
		{"*.example.com", "example.com", false},
		{"*.example.com", "www.example.org", false},
		{"www.*.com", "www.example.com", true},
		{"localhost", "localhost", true},
		{"b.example", "evil.b.example", false},
	} {
		if got := HostMatches(tc.pattern, tc.host); got != tc.want {
			t.Errorf("HostMatches(%q, %q) = %v, want %v", tc.pattern, tc.host, got, tc.want)
		}
	}
}
