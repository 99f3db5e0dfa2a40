package b2cauth_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-b2c/caddy-b2c/internal/testcaddy"
)

// TestSignInWithACertificate: an Entra ID app with a certificate credential
// and no secret signs users in and renews their sessions against the
// emulator, which checks each client assertion as Entra does; the same app
// with a certificate the registration does not know cannot.
func TestSignInWithACertificate(t *testing.T) {
	cert, key := testcaddy.Certificate(t)
	otherCert, otherKey := testcaddy.Certificate(t)
	idp := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	good := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	unknown := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	site := func(addr, cert, key string) string {
		return fmt.Sprintf(`%s {
	b2c_auth {
		issuer %s/contoso.onmicrosoft.com/v2.0
		client_id %s
		client_certificate %s %s
		scopes openid profile offline_access
	}
	respond "name={http.auth.user.name}"
}
`, addr, idp, clientID, cert, key)
	}
	testcaddy.Start(t, testcaddy.Globals(t.TempDir())+fmt.Sprintf(`%[1]s {
	b2c_emulator {
		flavor entra_id
		tenant_id %s
		client %s {
			certificate %s
			redirect_uri %s/.auth/login/b2c/callback %s/.auth/login/b2c/callback
		}
		user ada@contoso.example Passw0rd! {
			name "Ada Lovelace"
		}
	}
}
`, idp, emulatorTenantID, clientID, cert, good, unknown)+site(good, cert, key)+site(unknown, otherCert, otherKey))

	b := testcaddy.NewBrowser(t)
	if landed := signInAs(t, b, good+"/", "ada@contoso.example"); !strings.Contains(landed.Body, "name=Ada Lovelace") {
		t.Fatalf("sign-in with the registered certificate: %d %q", landed.StatusCode, landed.Body)
	}
	if res := b.Do(http.MethodPost, good+"/.auth/refresh", nil); res.StatusCode != http.StatusNoContent {
		t.Errorf("refresh with the certificate: %d %q", res.StatusCode, res.Body)
	}

	other := testcaddy.NewBrowser(t)
	if landed := signInAs(t, other, unknown+"/", "ada@contoso.example"); landed.StatusCode < 400 || strings.Contains(landed.Body, "name=Ada") {
		t.Errorf("a certificate the app does not have signed in: %d %q", landed.StatusCode, landed.Body)
	}
}

// TestEveryCredentialWithoutASecret: one Entra ID app, registered with a
// certificate, a federated credential for a Kubernetes-style issuer and one
// for a user-assigned managed identity, signs users in, renews their
// sessions and reads their groups from Microsoft Graph with each kind of
// credential. A rotated token file is read again (a token the app does not
// trust fails the sign-in; the next one, written over it, works without a
// restart). A managed identity endpoint that is down makes sign-in answer
// 503 after three tries; once it is back, sign-in works and its token is
// fetched once for sign-in, Graph and renewal.
func TestEveryCredentialWithoutASecret(t *testing.T) {
	const identity, identityObject = "44444444-5555-6666-7777-888888888888", "55555555-6666-7777-8888-999999999999"
	const workload = "system:serviceaccount:web:caddy"
	cert, key := testcaddy.Certificate(t)
	kube := testcaddy.NewIssuer(t)
	tokenFile := filepath.Join(t.TempDir(), "azure-identity-token")
	writeToken := func(subject string) {
		if err := os.WriteFile(tokenFile, []byte(kube.Token(t, subject, "api://AzureADTokenExchange", time.Hour)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeToken("system:serviceaccount:web:someone-else")

	idp := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	// The platform's managed identity endpoint: down, then forwarding to
	// the emulator's.
	var up atomic.Bool
	var downCalls, upCalls atomic.Int32
	emulatorMI, _ := url.Parse(idp)
	forward := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(emulatorMI) }}
	platform := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() { // unavailable twice (asked again), then a design-time error (not)
			if downCalls.Add(1) <= 2 {
				http.Error(w, `{"error":"service_unavailable"}`, http.StatusServiceUnavailable)
				return
			}
			http.Error(w, `{"error":"invalid_request","error_description":"Identity not found"}`, http.StatusBadRequest)
			return
		}
		upCalls.Add(1)
		forward.ServeHTTP(w, r)
	}))
	t.Cleanup(platform.Close)
	t.Setenv("IDENTITY_ENDPOINT", platform.URL+"/metadata/identity/oauth2/token")
	t.Setenv("IDENTITY_HEADER", "test-admin-key")

	sites := map[string]string{
		"certificate":      fmt.Sprintf("client_certificate %s %s", cert, key),
		"token file":       "client_assertion file " + tokenFile,
		"managed identity": "client_assertion managed_identity " + identity,
	}
	origins := map[string]string{}
	var config, redirects strings.Builder
	for name, credential := range sites {
		origins[name] = fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
		fmt.Fprintf(&redirects, " %s/.auth/login/b2c/callback", origins[name])
		fmt.Fprintf(&config, `%s {
	b2c_auth {
		issuer %s/contoso.onmicrosoft.com/v2.0
		client_id %s
		%s
		scopes openid profile offline_access
		groups graph
		graph_endpoint %[2]s
		graph_login %[2]s
	}
	respond "groups={http.auth.user.groups}"
}
`, origins[name], idp, clientID, credential)
	}
	testcaddy.Start(t, testcaddy.Globals(t.TempDir())+fmt.Sprintf(`%[1]s {
	b2c_emulator {
		flavor entra_id
		tenant_id %[2]s
		admin_key test-admin-key
		managed_identity %[3]s %[4]s
		client %[5]s {
			certificate %[6]s
			federated_credential %[7]s %[8]s
			federated_credential %[1]s/%[2]s/v2.0 %[4]s
			graph_permission GroupMember.Read.All
			redirect_uri%[9]s
		}
		user ada@contoso.example Passw0rd!
		group %[10]s Staff {
			member ada@contoso.example
		}
	}
}
`, idp, emulatorTenantID, identity, identityObject, clientID, cert, kube.URL, workload, redirects.String(), staffGroup)+config.String())

	works := func(name string) {
		t.Helper()
		b := testcaddy.NewBrowser(t)
		if landed := signInAs(t, b, origins[name]+"/", "ada@contoso.example"); landed.StatusCode != 200 || landed.Body != "groups="+staffGroup {
			t.Fatalf("%s: sign-in and Graph: %d %q", name, landed.StatusCode, landed.Body)
		}
		if res := b.Do(http.MethodPost, origins[name]+"/.auth/refresh", nil); res.StatusCode != http.StatusNoContent {
			t.Errorf("%s: renewal: %d %q", name, res.StatusCode, res.Body)
		}
	}
	works("certificate")

	if landed := signInAs(t, testcaddy.NewBrowser(t), origins["token file"]+"/", "ada@contoso.example"); landed.StatusCode < 400 || strings.Contains(landed.Body, "groups=") {
		t.Errorf("a token of a subject the app does not trust: %d %q", landed.StatusCode, landed.Body)
	}
	writeToken(workload) // the rotation
	works("token file")

	landed := signInAs(t, testcaddy.NewBrowser(t), origins["managed identity"]+"/", "ada@contoso.example")
	if landed.StatusCode != http.StatusServiceUnavailable || downCalls.Load() != 3 {
		t.Errorf("the managed identity endpoint down, then refusing: %d after %d tries, want 503 after 3", landed.StatusCode, downCalls.Load())
	}
	up.Store(true)
	works("managed identity")
	if n := upCalls.Load(); n != 1 {
		t.Errorf("the managed identity's token was fetched %d times for a sign-in, Graph and a renewal, want 1", n)
	}
}
