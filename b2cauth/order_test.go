package b2cauth_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-b2c/caddy-b2c/b2cauth"
	"github.com/caddy-b2c/caddy-b2c/internal/testcaddy"
)

const orderProvider = `
		authority http://127.0.0.1:9/contoso.onmicrosoft.com
		policy B2C_1_susi
		client_id x`

// TestOrderMistakes: inside route, Caddy keeps the written order, so a
// handler that can answer before b2c_auth serves pages to anyone. The
// check names both, by their Caddyfile names; the attacks found from
// outside — respond with a method or a not-path matcher, metrics, invoke,
// php_fastcgi (a subroute), a matcher on a header, a handler the check
// does not know — are each a finding. A deliberate health check whose path
// b2c_auth does not cover is fine, and so are redirects, other sites, and
// the site block, where Caddy orders the directives.
func TestOrderMistakes(t *testing.T) {
	auth := "b2c_auth {" + orderProvider + "\n\t\t}"
	inRoute := func(before string) string {
		return "route {\n\t\t" + before + "\n\t\t" + auth + "\n\t\trespond \"hi\"\n\t}"
	}
	for _, tc := range []struct {
		name, site string
		want       []string // substrings of the findings, in order; none for fine
	}{
		{"respond before b2c_auth in route", "route {\n\t\trespond \"secret\"\n\t\t" + auth + "\n\t}",
			[]string{"respond (every request) answers before b2c_auth (every request)"}},
		{"file_server before b2c_auth in route", "route {\n\t\tfile_server\n\t\t" + auth + "\n\t}",
			[]string{"file_server (every request) answers before b2c_auth"}},
		{"an overlapping path", "route {\n\t\trespond /admin/* \"secret\"\n\t\tb2c_auth /admin/* {" + orderProvider + "\n\t\t}\n\t\trespond \"hi\"\n\t}",
			[]string{"respond (/admin/*) answers before b2c_auth (/admin/*)"}},
		{"respond on a method", inRoute("@opt method OPTIONS\n\t\trespond @opt \"secret\""),
			[]string{"respond (matched on method) may answer before b2c_auth (every request)"}},
		{"respond on not path", inRoute("@public not path /api/*\n\t\trespond @public \"secret\""),
			[]string{"respond (matched on not) may answer before b2c_auth"}},
		{"respond on a header", inRoute("@h header X-Debug 1\n\t\trespond @h \"secret\""),
			[]string{"respond (matched on header) may answer before b2c_auth"}},
		{"metrics", inRoute("metrics"), []string{"metrics (every request) answers before b2c_auth"}},
		{"invoke", inRoute("invoke secret"), []string{"invoke (every request) answers before b2c_auth"}},
		{"php_fastcgi, a subroute", inRoute("php_fastcgi 127.0.0.1:9000"), []string{"php_fastcgi (*.php) may answer before b2c_auth (every request)"}},
		{"a health check before it", inRoute("respond /healthz 200"), nil},
		{"a redirect before it", inRoute("redir /old /new"), nil},
		{"headers before it", inRoute("header X-Frame-Options DENY"), nil},
		{"the site block orders directives", "respond \"secret\"\n\t" + auth, nil},
		{"b2c_auth first in route", "route {\n\t\t" + auth + "\n\t\trespond \"secret\"\n\t}", nil},
		{"b2c_auth first, then a method matcher", "route {\n\t\t" + auth + "\n\t\t@opt method OPTIONS\n\t\trespond @opt 204\n\t\tb2c_auth /admin/* {" + orderProvider + "\n\t\t}\n\t}", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testcaddy.Adapt(t, "&(secret) {\n\trespond \"secret\"\n}\nhttp://localhost:8080 {\n\t"+tc.site+"\n}\nhttp://other.example {\n\trespond \"other site\"\n}\n")
			got, err := b2cauth.OrderMistakes(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("findings %q, want %d", got, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("finding %q lacks %q", got[i], w)
				}
			}
		})
	}
}

// TestOrderMistakeUnknownHandler: a handler the check does not know (a
// plugin's) before b2c_auth in a JSON config may answer: it is reported.
func TestOrderMistakeUnknownHandler(t *testing.T) {
	cfg := `{"apps":{"http":{"servers":{"srv0":{"routes":[{"match":[{"host":["localhost"]}],"handle":[
		{"handler":"some_plugin"},
		{"handler":"b2c_auth","protect":{"path":["/admin/*"]}},
		{"handler":"static_response","body":"hi"}]}]}}}}}`
	got, err := b2cauth.OrderMistakes([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !strings.Contains(got[0], "some_plugin (a handler the check does not know; every request) may answer before b2c_auth (/admin/*)") {
		t.Errorf("findings %q", got)
	}
}

// TestOrderMistakeWarnedAtStart: Caddy starts (the config is valid), and
// b2c_auth logs a warning naming the handler that answers before it.
func TestOrderMistakeWarnedAtStart(t *testing.T) {
	dir := t.TempDir()
	logFile := filepath.Join(dir, "caddy.log")
	base := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	globals := strings.Replace(testcaddy.Globals(dir), "level ERROR", fmt.Sprintf("level WARN\n\t\toutput file %q", logFile), 1)
	testcaddy.Start(t, globals+base+" {\n\troute {\n\t\trespond \"secret\"\n\t\tb2c_auth {"+orderProvider+"\n\t\t}\n\t}\n}\n")
	// The check runs once the config is the running one: wait for its line.
	testcaddy.WaitForLog(t, logFile, "b2c_auth does not protect what it should: respond (every request) answers before b2c_auth")
}

// TestWrongPolicyIsAConfigurationError: a user flow the tenant does not
// have (B2C answers AADB2C90022) is logged at start, and users get a page
// saying the site is misconfigured — not a temporary outage, and no
// detail for an attacker.
func TestWrongPolicyIsAConfigurationError(t *testing.T) {
	dir := t.TempDir()
	logFile := filepath.Join(dir, "caddy.log")
	idp := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	base := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	globals := strings.Replace(testcaddy.Globals(dir), "level ERROR", fmt.Sprintf("level ERROR\n\t\toutput file %q", logFile), 1)
	testcaddy.Start(t, globals+fmt.Sprintf(`
%[1]s {
	b2c_emulator
}
%[2]s {
	b2c_auth {
		authority %[1]s/contoso.onmicrosoft.com
		policy B2C_1_does_not_exist
		client_id x
	}
	respond "secret"
}
`, idp, base))
	testcaddy.WaitForLog(t, logFile, "identity provider metadata cannot be fetched", "AADB2C90022")
	page := testcaddy.NewBrowser(t).Get(base + "/")
	if page.StatusCode != 500 || !strings.Contains(page.Body, "not set up correctly") || strings.Contains(page.Body, "AADB2C90022") || strings.Contains(page.Body, "Try again") {
		t.Errorf("a wrong policy: %d\n%s", page.StatusCode, page.Body)
	}
}
