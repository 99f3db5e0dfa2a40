package b2cauth_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/caddy-b2c/caddy-b2c/internal/testcaddy"
)

// httpsSites starts the emulator and a b2c_auth site, both on HTTPS with a
// certificate from a CA made for the test, the site trusting the provider
// through trust (a tls_trust_pool line, or nothing). It returns the site's
// origin and a client that trusts the CA.
func httpsSites(t *testing.T, trust string) (string, *http.Client) {
	dir := t.TempDir()
	ca, cert, key := testcaddy.TestCA(t, dir)
	idp := fmt.Sprintf("https://127.0.0.1:%d", testcaddy.FreePort(t))
	site := fmt.Sprintf("https://localhost:%d", testcaddy.FreePort(t))
	testcaddy.Start(t, testcaddy.GlobalsHTTPS(dir)+fmt.Sprintf(`
%[1]s {
	tls %[4]s %[5]s
	b2c_emulator {
		client %[3]s {
			redirect_uri %[2]s/.auth/login/b2c/callback
		}
	}
}
%[2]s {
	tls %[4]s %[5]s
	b2c_auth {
		authority %[1]s/contoso.onmicrosoft.com
		policy B2C_1_susi
		client_id %[3]s
		%[6]s
	}
	respond "name={http.auth.user.name}"
}
`, idp, site, clientID, cert, key, strings.ReplaceAll(trust, "CA", ca)))
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return site, &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// TestTrustPool: a provider whose certificate a local CA signed (an
// emulator on tls internal, a TLS-inspecting proxy) is unreachable with
// the system's roots — sign-in answers 503 — and reachable once the site
// trusts that CA with tls_trust_pool, as reverse_proxy does.
func TestTrustPool(t *testing.T) {
	for _, tc := range []struct {
		trust string
		want  int
	}{
		{"", http.StatusServiceUnavailable},
		{"tls_trust_pool file CA", http.StatusFound},
	} {
		t.Run(fmt.Sprint(tc.want), func(t *testing.T) {
			site, client := httpsSites(t, tc.trust)
			req, _ := http.NewRequest(http.MethodGet, site+"/", nil)
			req.Header.Set("Accept", "text/html")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want || (tc.want == http.StatusFound && !strings.Contains(resp.Header.Get("Location"), "/authorize")) {
				t.Errorf("%q: %d %q, want %d", tc.trust, resp.StatusCode, resp.Header.Get("Location"), tc.want)
			}
		})
	}
}
