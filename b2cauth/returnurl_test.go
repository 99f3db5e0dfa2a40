package b2cauth

import "testing"

// TestReturnURLRefusesOpenRedirects: an attacker links to
// /.auth/login?post_login_redirect_uri=<their site> so that, after a real
// sign-in, the victim lands on a phishing page. Every such form is refused.
func TestReturnURLRefusesOpenRedirects(t *testing.T) {
	for _, evil := range []string{
		"https://evil.example", "http://evil.example/x", "//evil.example", "///evil.example", `/\evil.example`,
		`\\evil.example`, "javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,x", "evil.example",
		"%2F%2Fevil.example", "/%2F%2Fevil.example", "/%5Cevil.example", "%252F%252Fevil.example", "/%252F/evil.example",
		"/\t/evil.example", "/\n/evil.example", "/%09/evil.example", "https:evil.example", "//user@evil.example",
		"/%2525252F%2525252Fevil",
	} {
		if got := safeReturnURL(evil); got != "/" {
			t.Errorf("safeReturnURL(%q) = %q, want /", evil, got)
		}
	}
	for _, ok := range []string{"/", "/a/b?c=d&e=%2Fx", "/docs#part", "/search?q=caddy+b2c", "/caf%C3%A9"} {
		if got := safeReturnURL(ok); got != ok {
			t.Errorf("safeReturnURL(%q) = %q, want it kept", ok, got)
		}
	}
}
