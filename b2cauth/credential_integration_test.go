package b2cauth_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

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
	testcaddy.Start(t, testcaddy.Globals(t.TempDir())+fmt.Sprintf(`%s {
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
