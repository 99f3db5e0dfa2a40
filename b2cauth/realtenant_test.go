package b2cauth_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-b2c/caddy-b2c/internal/testcaddy"
)

// Behaviours of real B2C tenants that the emulator models (issue 13), seen
// through b2c_auth.

// tenantSite starts the emulator with extra settings and a protected site;
// it returns the site's base URL and a browser.
func tenantSite(t *testing.T, emulatorExtra, siteAddr string) (string, *testcaddy.Browser) {
	idp := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	port := testcaddy.FreePort(t)
	base := fmt.Sprintf("http://localhost:%d", port)
	if siteAddr == "" {
		siteAddr = base
	}
	testcaddy.Start(t, testcaddy.Globals(t.TempDir())+fmt.Sprintf(`
%[1]s {
	b2c_emulator {
		client %[3]s {
			redirect_uri %[2]s/.auth/login/b2c/callback
		}
		user ada@contoso.example Passw0rd! {
			name "Ada Lovelace"
		}
		%[5]s
	}
}
%[4]s {
	b2c_auth {
		authority %[1]s/contoso.onmicrosoft.com
		policy B2C_1_susi
		password_reset_policy B2C_1_reset
		client_id %[3]s
	}
	respond "id={http.auth.user.id} name={http.auth.user.name}"
}
`, idp, base, clientID, strings.ReplaceAll(siteAddr, "PORT", fmt.Sprint(port)), emulatorExtra))
	return base, testcaddy.NewBrowser(t)
}

func TestSocialProviderCancelAndFailure(t *testing.T) {
	base, b := tenantSite(t, "", "")
	page := b.Follow(base + "/start?x=1")
	// AADB2C90273 with access_denied: the user cancelled at the social
	// provider; back where they started.
	cb := b.Get(testcaddy.Link(t, page, "socialCancel"))
	back := b.Get(cb.Header.Get("Location"))
	if back.StatusCode != http.StatusFound || back.Header.Get("Location") != "/start?x=1" {
		t.Errorf("cancel at a social provider: %d %q", back.StatusCode, back.Header.Get("Location"))
	}
	// AADB2C90273 with server_error: the social provider failed; say so,
	// by its code (the description goes to the log).
	page = b.Follow(base + "/start?x=1")
	cb = b.Get(testcaddy.Link(t, page, "socialFailure"))
	failed := b.Get(cb.Header.Get("Location"))
	if failed.StatusCode != http.StatusUnauthorized || !strings.Contains(failed.Body, "AADB2C90273") || strings.Contains(failed.Body, "response_mode is invalid") {
		t.Errorf("social provider failure: %d\n%s", failed.StatusCode, failed.Body)
	}
}

func TestWrongRedirectURIShowsItsError(t *testing.T) {
	// The site also answers on 127.0.0.1, whose redirect URI is not
	// registered: B2C sends AADB2C90006 to the registered one, without state.
	base, b := tenantSite(t, "", "http://localhost:PORT, http://127.0.0.1:PORT")
	page := b.Follow(strings.Replace(base, "localhost", "127.0.0.1", 1) + "/")
	if page.StatusCode != http.StatusUnauthorized || !strings.Contains(page.Body, "AADB2C90006") || strings.Contains(page.Body, "state mismatch") {
		t.Errorf("unregistered redirect URI: %d\n%s", page.StatusCode, page.Body)
	}
}

func TestConstantSubjectIsRefused(t *testing.T) {
	// The legacy "Subject: Not supported" setting, and "User's Object ID"
	// not ticked: every user would have the same ID.
	base, b := tenantSite(t, "subject not_supported\n\t\tpolicy_claims B2C_1_susi emails name", "")
	page := b.Follow(base + "/")
	done := b.FollowResponse(b.Submit(page, map[string]string{"email": "ada@contoso.example", "password": "Passw0rd!"}), "")
	if done.StatusCode != http.StatusUnauthorized || !strings.Contains(done.Body, "User&#39;s Object ID") {
		t.Errorf("constant sub: %d\n%s", done.StatusCode, done.Body)
	}
}

func TestRefusedRefreshEndsTheSession(t *testing.T) {
	base, b := tenantSite(t, "", "")
	page := b.Follow(base + "/")
	b.FollowResponse(b.Submit(page, map[string]string{"email": "ada@contoso.example", "password": "Passw0rd!"}), "")
	old := b.Copy(base)
	// A password reset revokes the user's refresh tokens at B2C (AADB2C90129).
	reset := b.Follow(base + "/.auth/login/reset")
	landed := b.FollowResponse(b.SubmitVerified(reset, "ada@contoso.example", map[string]string{"password": "N3wPassw0rd", "password_confirm": "N3wPassw0rd"}), "")
	if !strings.Contains(landed.Body, "name=Ada Lovelace") {
		t.Fatalf("after reset: %d %q", landed.StatusCode, landed.Body)
	}
	refresh := old.Do(http.MethodPost, base+"/.auth/refresh", nil)
	if refresh.StatusCode != http.StatusUnauthorized {
		t.Errorf("refresh with a revoked refresh token: %d", refresh.StatusCode)
	}
	if r := old.Get(base + "/"); r.StatusCode != http.StatusFound {
		t.Errorf("the session the provider no longer backs still opens: %d %q", r.StatusCode, r.Body)
	}
	if r := b.Get(base + "/"); r.StatusCode != http.StatusOK {
		t.Errorf("the new session does not open: %d", r.StatusCode)
	}
}

// TestIDPAccessTokenStaysInside: a user flow may pass the social
// provider's own access token through (idp_access_token). It is a
// credential for another service: it reaches no placeholder, header or
// /.auth/me unless expose_idp_access_token says so.
func TestIDPAccessTokenStaysInside(t *testing.T) {
	for _, expose := range []bool{false, true} {
		t.Run(fmt.Sprint("expose=", expose), func(t *testing.T) {
			idp := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
			base := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
			option := ""
			if expose {
				option = "expose_idp_access_token"
			}
			testcaddy.Start(t, testcaddy.Globals(t.TempDir())+fmt.Sprintf(`
%[1]s {
	b2c_emulator {
		at_hash
		client %[3]s {
			redirect_uri %[2]s/.auth/login/b2c/callback
		}
		user sam@contoso.example Passw0rd! {
			name "Sam Social"
			idp facebook.com
		}
		policy_claims B2C_1_susi oid emails name idp idp_access_token
	}
}
%[2]s {
	b2c_auth {
		authority %[1]s/contoso.onmicrosoft.com
		policy B2C_1_susi
		client_id %[3]s
		scopes openid offline_access %[3]s
		easy_auth_headers
		%[4]s
	}
	respond "idp={http.auth.user.idp} token={http.auth.user.idp_access_token} principal={http.request.header.X-MS-CLIENT-PRINCIPAL}"
}
`, idp, base, clientID, option))
			b := testcaddy.NewBrowser(t)
			page := b.Follow(base + "/")
			landed := b.FollowResponse(b.Submit(page, map[string]string{"email": "sam@contoso.example", "password": "Passw0rd!"}), "")
			if !strings.Contains(landed.Body, "idp=facebook.com") {
				t.Fatalf("sign-in (with at_hash checked): %d %q", landed.StatusCode, landed.Body)
			}
			me := b.Get(base + "/.auth/me")
			inside := strings.Contains(landed.Body, "token=EAA") || strings.Contains(me.Body, "idp_access_token")
			principal := landed.Body[strings.Index(landed.Body, "principal=")+len("principal="):]
			decoded, _ := base64.StdEncoding.DecodeString(principal)
			inside = inside || strings.Contains(string(decoded), "idp_access_token")
			if inside != expose {
				t.Errorf("idp_access_token reached the app: %v, want %v\n%s\n%s", inside, expose, landed.Body, me.Body)
			}
		})
	}
}
