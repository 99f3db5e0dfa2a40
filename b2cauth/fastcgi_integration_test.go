package b2cauth_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/fcgi"
	"strings"
	"testing"

	"github.com/caddy-b2c/caddy-b2c/internal/testcaddy"
)

// TestUnderscoredIdentityHeadersNeverReachAFastCGIApp: the attack is a
// client header spelled with underscores, X_MS_CLIENT_PRINCIPAL_ID. Go
// keeps it apart from X-MS-CLIENT-PRINCIPAL-ID, but FastCGI (php_fastcgi,
// reverse_proxy's fastcgi transport) and CGI give the app both as
// HTTP_X_MS_CLIENT_PRINCIPAL_ID: signed out, the app would take it for
// b2c_auth's header; signed in, whichever of the two Caddy wrote last (map
// order) would win. Caddy drops underscored headers unless the server
// allows them (expected_underscore_headers); this site allows x_ms_*, as
// one whose older app sent such headers would, and b2c_auth still keeps
// them from the app. The app is a real FastCGI responder (Go's
// net/http/fcgi, which turns HTTP_* back into headers as PHP reads them).
func TestUnderscoredIdentityHeadersNeverReachAFastCGIApp(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go fcgi.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(r.Header)
	}))

	s := &site{t: t, storage: t.TempDir(), b: testcaddy.NewBrowser(t)}
	s.idp = fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	s.base = fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	s.config = strings.Replace(s.caddyfile(s.base, fmt.Sprintf(`	b2c_auth {
		AUTH
		easy_auth_headers
		unauthenticated allow
	}
	reverse_proxy %s {
		transport fastcgi
	}`, l.Addr())), "\tadmin off\n", "\tadmin off\n\tservers {\n\t\texpected_underscore_headers x_ms_*\n\t}\n", 1)
	testcaddy.Start(t, s.config)
	spoofed := map[string]string{
		"X_MS_CLIENT_PRINCIPAL_ID":   "attacker",
		"X_MS_CLIENT_PRINCIPAL_NAME": "attacker@contoso.example",
		"x_ms_client_principal":      "YXR0YWNrZXI=",
		"X_MS_TOKEN_AAD_ID_TOKEN":    "forged",
	}
	get := func(b *testcaddy.Browser) http.Header {
		t.Helper()
		req, _ := http.NewRequest("GET", s.base+"/app.php", nil)
		req.Header.Set("Accept", "text/html")
		for k, v := range spoofed {
			req.Header[k] = []string{v} // as spelled: Header.Set would change it
		}
		resp, err := b.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return upstreamHeaders(t, &testcaddy.Response{Response: resp, Body: string(body)})
	}

	// Signed out (anonymous allowed): no identity header at all.
	for k := range get(testcaddy.NewBrowser(t)) {
		if strings.HasPrefix(strings.ToLower(k), "x-ms-") {
			t.Errorf("signed out: the app got %s", k)
		}
	}

	// Signed in: always the real identity. Map order decides which of two
	// same-named variables Caddy writes last, so ask many times.
	s.signIn("/.auth/login", "ada@contoso.example")
	for i := range 20 {
		h := get(s.b)
		if id := h.Get("X-Ms-Client-Principal-Id"); id == "" || id == "attacker" || h.Get("X-Ms-Client-Principal-Name") != "ada@contoso.example" ||
			h.Get("X-Ms-Token-Aad-Id-Token") == "forged" || h.Get("X-Ms-Client-Principal") == "YXR0YWNrZXI=" {
			t.Fatalf("request %d: the app got a spoofed identity: %v", i, h)
		}
	}
}
