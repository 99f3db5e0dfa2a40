package b2cauth

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// Fuzz targets for what the handler takes from clients and providers.
// `go test` runs their seeds; `.ci/run` fuzzes each for a few seconds;
// `go test ./b2cauth -run '^$' -fuzz FuzzX -fuzztime 10m` fuzzes one long.

// FuzzReturnURL: whatever comes in, what goes out is "/" or a path on this
// site that no browser reads as another host.
func FuzzReturnURL(f *testing.F) {
	for _, s := range []string{"/", "/a?b=c#d", "//evil", "/\\evil", "https://evil", "javascript:alert(1)", "/%2F%2Fevil", "/%5Cevil", "%2F%2Fevil", "/a/../..//evil", "\t//evil", "/\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		out := safeReturnURL(raw)
		if out == "/" {
			return
		}
		if !strings.HasPrefix(out, "/") || strings.HasPrefix(out, "//") || strings.HasPrefix(out, "/\\") || strings.ContainsAny(out, "\r\n\t\x00") {
			t.Fatalf("%q gave %q", raw, out)
		}
		u, err := url.Parse(out)
		if err != nil || u.Scheme != "" || u.Host != "" {
			t.Fatalf("%q gave %q, which parses with a scheme or host", raw, out)
		}
		// A browser resolves it against this site: it must stay here.
		base, _ := url.Parse("https://site.example/x/y")
		if r := base.ResolveReference(u); r.Host != "site.example" {
			t.Fatalf("%q gave %q, which a browser sends to %q", raw, out, r.Host)
		}
	})
}

// fuzzHandler is a handler against the hostile provider, and a real
// session cookie to seed with.
func fuzzHandler(f *testing.F) (*Handler, []*http.Cookie, *hostile, signer) {
	h, p, s := setup(f, nil)
	return h, signedIn(f, h, p, s, nil), p, s
}

// FuzzSessionCookie: any Cookie header is a session or none; never a
// panic, never a 5xx.
func FuzzSessionCookie(f *testing.F) {
	h, cookies, _, _ := fuzzHandler(f)
	var real []string
	for _, c := range cookies {
		real = append(real, c.Name+"="+c.Value)
	}
	f.Add(strings.Join(real, "; "))
	f.Add("b2c_session=2." + cookies[0].Value[:40] + "; b2c_session_1=" + cookies[0].Value[40:])
	f.Add("b2c_session=99.x; b2c_session_1=y")
	f.Add("b2c_session=AQ; b2c_flow_abcdefghijklmnop=AQAA")
	f.Add("b2c_session=" + strings.Repeat("A", 5000))
	f.Fuzz(func(t *testing.T, header string) {
		req := navigation("GET", "/page")
		req.Header.Set("Cookie", header)
		res := serve(h, req)
		if res.Code >= 500 {
			t.Fatalf("Cookie %q: %d", header, res.Code)
		}
	})
}

// FuzzCallback: any callback query, form body and flow cookie gets a
// 2xx/3xx/4xx answer; never a panic or a 5xx other than the provider's.
func FuzzCallback(f *testing.F) {
	h, _, _, _ := fuzzHandler(f)
	state, _, fc := pendingFlow(f, h, "/")
	f.Add("GET", "state="+state+"&code=abc", "", fc.Value)
	f.Add("POST", "", "state="+state+"&error=access_denied&error_description=AADB2C90091%3a+x", fc.Value)
	f.Add("GET", "error=redirect_uri_mismatch&error_description=AADB2C90006", "", "")
	f.Add("POST", "", "state=x&code=y&b2c_resubmit=1", "garbage")
	f.Add("GET", "", "", "")
	f.Fuzz(func(t *testing.T, method, query, body, flowCookie string) {
		if method != "GET" && method != "POST" {
			method = "PUT"
		}
		req := navigation(method, defaultRedirectPath+"?"+url.PathEscape(query))
		req.URL.RawQuery = query
		if method == "POST" {
			req.Body = io.NopCloser(strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if flowCookie != "" && strings.IndexFunc(flowCookie, func(r rune) bool { return r <= ' ' || r == ';' || r == '"' || r >= 0x7f }) < 0 {
			req.AddCookie(&http.Cookie{Name: fc.Name, Value: flowCookie})
		}
		res := serve(h, req)
		if res.Code >= 500 && res.Code != http.StatusBadGateway && res.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s ?%q body %q: %d", method, query, body, res.Code)
		}
	})
}

// FuzzBearer: any Authorization header is a user, a 401 or a 403; a token
// that verifies must be the one the provider's key signed.
func FuzzBearer(f *testing.F) {
	h, p, s := setup(f, nil)
	valid := s.sign(f, accessClaims(p))
	f.Add("Bearer " + valid)
	f.Add("Bearer " + valid[:len(valid)-2])
	f.Add("bearer a.b.c")
	f.Add("Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add("Basic dXNlcjpwYXNz")
	f.Fuzz(func(t *testing.T, auth string) {
		req := apiRequest("")
		req.Header["Authorization"] = []string{auth}
		res := serve(h, req)
		if res.Code >= 500 {
			t.Fatalf("Authorization %q: %d", auth, res.Code)
		}
		if res.reachedNext {
			if token, _ := res.repl.GetString("http.auth.b2c.access_token"); token != valid {
				t.Fatalf("a token the provider did not sign was accepted: %q", auth)
			}
		}
	})
}

// FuzzCaddyfile: any b2c_auth block parses or gives an error; never a
// panic.
func FuzzCaddyfile(f *testing.F) {
	f.Add("b2c_auth {\n tenant contoso\n policy B2C_1_susi\n client_id x\n}")
	f.Add("b2c_auth {\n issuer https://login.microsoftonline.com/common/v2.0\n tenants *\n client_id x\n allow roles admin\n additional_issuer a b\n}")
	f.Add("b2c_auth {\n tls_trust_pool file /x\n session_lifetime 1h\n cookie_secret {env.X}\n}")
	f.Add("b2c_auth x y {\n}")
	f.Fuzz(func(t *testing.T, input string) {
		tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
		if err != nil {
			return // not a Caddyfile at all: Caddy's lexer says so before any directive sees it
		}
		var h Handler
		_ = h.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens))
	})
}
