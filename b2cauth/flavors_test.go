package b2cauth_test

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/caddy-b2c/caddy-b2c/internal/testcaddy"
)

const (
	emulatorTenantID = "0d5a8b3c-1111-4222-8333-944455556666"
	otherTenantID    = "9188040d-6c67-4c5b-b112-36a304b66dad"
)

// flavorSite runs the emulator in a flavor and a site signing in with it
// through the issuer mode, as a Caddy user of External ID or Entra ID does.
func flavorSite(t *testing.T, emulator, auth string) (base string, b *testcaddy.Browser) {
	idp := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	base = fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	testcaddy.Start(t, testcaddy.Globals(t.TempDir())+fmt.Sprintf(`
%[1]s {
	b2c_emulator {
		tenant_id %[4]s
		client %[3]s {
			redirect_uri %[2]s/.auth/login/b2c/callback
		}
		user ada@contoso.example Passw0rd! {
			name "Ada Lovelace"
		}
		%[5]s
	}
}
%[2]s {
	b2c_auth {
		client_id %[3]s
		%[6]s
	}
	respond "id={http.auth.user.id} name={http.auth.user.name} email={http.auth.user.email} tid={http.auth.user.tid} ver={http.auth.user.ver}"
}
`, idp, base, clientID, emulatorTenantID, emulator, strings.ReplaceAll(auth, "IDP", idp)))
	return base, testcaddy.NewBrowser(t)
}

func signInAs(t *testing.T, b *testcaddy.Browser, u, email string) *testcaddy.Response {
	t.Helper()
	page := b.Follow(u)
	if !strings.Contains(page.Body, `id="localAccountForm"`) {
		t.Fatalf("%s did not lead to the sign-in page: %d\n%s", u, page.StatusCode, page.Body)
	}
	return b.FollowResponse(b.Submit(page, map[string]string{"email": email, "password": "Passw0rd!"}), "")
}

// TestFlavors: for External ID and Entra ID, sign-in through the
// emulator's pages, the placeholders (tid included), /.auth/me, refresh and
// sign-out, with b2c_auth in issuer mode: the metadata's issuer (the tenant
// ID form) differs from the discovery URL (the tenant name form).
func TestFlavors(t *testing.T) {
	for _, flavor := range []string{"external_id", "entra_id"} {
		t.Run(flavor, func(t *testing.T) {
			base, b := flavorSite(t, "flavor "+flavor,
				"issuer IDP/contoso.onmicrosoft.com/v2.0\n\t\tscopes openid profile email offline_access")
			landed := signInAs(t, b, base+"/x", "ada@contoso.example")
			want := "name=Ada Lovelace email=ada@contoso.example tid=" + emulatorTenantID + " ver=2.0"
			if landed.StatusCode != 200 || !strings.Contains(landed.Body, want) || strings.Contains(landed.Body, "id= ") {
				t.Fatalf("after sign-in: %d %q, want %q", landed.StatusCode, landed.Body, want)
			}
			if me := b.Get(base + "/.auth/me"); me.StatusCode != 200 || !strings.Contains(me.Body, `"tid","val":"`+emulatorTenantID) {
				t.Errorf("/.auth/me: %d %s", me.StatusCode, me.Body)
			}
			if r := b.Do(http.MethodPost, base+"/.auth/refresh", nil); r.StatusCode != http.StatusNoContent {
				t.Errorf("refresh: %d %s", r.StatusCode, r.Body)
			}
			old := b.Copy(base)
			out := b.Follow(base + "/.auth/logout?post_logout_redirect_uri=/bye")
			if !strings.Contains(out.Body, `id="localAccountForm"`) {
				t.Errorf("after sign-out, /bye should lead to the sign-in page: %d", out.StatusCode)
			}
			if r := old.Get(base + "/x"); r.StatusCode != http.StatusFound {
				t.Errorf("the signed-out cookie still opens the site: %d", r.StatusCode)
			}
		})
	}
}

// TestExternalIDPasswordResetInsideSignIn: External ID resets a password
// inside its sign-in pages and the sign-in goes on; the app sees no error.
func TestExternalIDPasswordResetInsideSignIn(t *testing.T) {
	base, b := flavorSite(t, "flavor external_id", "issuer IDP/contoso.onmicrosoft.com/v2.0")
	page := b.Follow(base + "/x")
	reset := b.Get(testcaddy.Link(t, page, "forgotPassword"))
	if !strings.Contains(reset.Body, `data-view="reset"`) {
		t.Fatalf("no reset page: %d\n%s", reset.StatusCode, reset.Body)
	}
	landed := b.FollowResponse(b.SubmitVerified(reset, "ada@contoso.example", map[string]string{"password": "N3wPassw0rd", "password_confirm": "N3wPassw0rd"}), "")
	if landed.Request.URL.Path != "/x" || !strings.Contains(landed.Body, "name=Ada Lovelace") {
		t.Errorf("after the reset: %s %q", landed.Request.URL, landed.Body)
	}
}

// TestEntraIDMultiTenant: an app registered as multi-tenant, on the
// organizations endpoint, admits users of the tenants it lists and no
// others.
func TestEntraIDMultiTenant(t *testing.T) {
	base, b := flavorSite(t, fmt.Sprintf("flavor entra_id\n\t\tmulti_tenant\n\t\tuser eve@fabrikam.example Passw0rd! {\n\t\t\tname Eve\n\t\t\ttenant_id %s\n\t\t}", otherTenantID),
		"issuer IDP/organizations/v2.0\n\t\ttenants "+emulatorTenantID)
	landed := signInAs(t, b, base+"/", "ada@contoso.example")
	if !strings.Contains(landed.Body, "tid="+emulatorTenantID) {
		t.Fatalf("a user of the admitted tenant: %d %q", landed.StatusCode, landed.Body)
	}
	eve := testcaddy.NewBrowser(t)
	refused := signInAs(t, eve, base+"/", "eve@fabrikam.example")
	if refused.StatusCode != http.StatusForbidden || !strings.Contains(refused.Body, "not admitted") {
		t.Errorf("a user of another tenant: %d %q", refused.StatusCode, refused.Body)
	}
}

// TestB2CTokenNumbersEitherWay: Microsoft's B2C pages show token responses
// with numbers as JSON numbers (access-tokens.md) and as strings
// (openid-connect.md); sign-in and renewal work with both.
func TestB2CTokenNumbersEitherWay(t *testing.T) {
	for _, format := range []string{"string", "number"} {
		t.Run(format, func(t *testing.T) {
			base, b := flavorSite(t, "token_numbers "+format,
				"authority IDP/contoso.onmicrosoft.com\n\t\tpolicy B2C_1_susi\n\t\tscopes openid offline_access "+clientID)
			if landed := signInAs(t, b, base+"/", "ada@contoso.example"); landed.StatusCode != 200 || !strings.Contains(landed.Body, "name=Ada Lovelace") {
				t.Fatalf("sign-in: %d %q", landed.StatusCode, landed.Body)
			}
			if res := b.Do(http.MethodPost, base+"/.auth/refresh", nil); res.StatusCode != http.StatusNoContent {
				t.Errorf("renewal: %d %q", res.StatusCode, res.Body)
			}
		})
	}
}

// TestEntraOptionalClaims: Entra ID puts sid and login_hint in ID tokens
// only for an app that asks for them (optional claims); b2c_auth signs in
// and out either way, and sends logout_hint when the token has login_hint.
func TestEntraOptionalClaims(t *testing.T) {
	const plainClient = "77777777-8888-9999-aaaa-bbbbbbbbbbbb"
	idp := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	asks, plain := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t)), fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	site := func(origin, client string) string {
		return fmt.Sprintf(`%s {
	b2c_auth {
		issuer %s/contoso.onmicrosoft.com/v2.0
		client_id %s
	}
	respond "sid={http.auth.user.sid} login_hint={http.auth.user.login_hint}"
}
`, origin, idp, client)
	}
	testcaddy.Start(t, testcaddy.Globals(t.TempDir())+fmt.Sprintf(`%s {
	b2c_emulator {
		flavor entra_id
		tenant_id %s
		client %s {
			optional_claims sid login_hint
			redirect_uri %s/.auth/login/b2c/callback
		}
		client %s {
			redirect_uri %s/.auth/login/b2c/callback
		}
		user ada@contoso.example Passw0rd!
	}
}
`, idp, emulatorTenantID, clientID, asks, plainClient, plain)+site(asks, clientID)+site(plain, plainClient))

	for _, tc := range []struct {
		origin string
		asks   bool
	}{{asks, true}, {plain, false}} {
		b := testcaddy.NewBrowser(t)
		landed := signInAs(t, b, tc.origin+"/", "ada@contoso.example")
		hasSID, hasHint := !strings.Contains(landed.Body, "sid= "), !strings.HasSuffix(landed.Body, "login_hint=")
		if landed.StatusCode != 200 || hasSID != tc.asks || hasHint != tc.asks {
			t.Fatalf("%s (asks for optional claims: %v): %d %q", tc.origin, tc.asks, landed.StatusCode, landed.Body)
		}
		out := b.Get(tc.origin + "/.auth/logout") // a self-submitting form to end_session
		hint := regexp.MustCompile(`name="logout_hint" value="([^"]*)"`).FindStringSubmatch(out.Body)
		if (hint != nil) != tc.asks || (tc.asks && !strings.HasSuffix(landed.Body, "login_hint="+hint[1])) {
			t.Errorf("%s: the sign-out form's logout_hint %q, want it only with the claim:\n%s", tc.origin, hint, out.Body)
		}
		b.FollowResponse(out, tc.origin+"/.auth/logout")
		if r := b.Get(tc.origin + "/"); r.StatusCode != http.StatusFound {
			t.Errorf("%s: still signed in after sign-out: %d", tc.origin, r.StatusCode)
		}
	}
}

// TestKeepMeSignedInThroughTheSite: a user who checked "Keep me signed in"
// at B2C comes back after the site's session has ended (a restarted browser
// that kept only persistent cookies) and is signed in again without a form.
func TestKeepMeSignedInThroughTheSite(t *testing.T) {
	base, b := flavorSite(t, "keep_me_signed_in 720h", "authority IDP/contoso.onmicrosoft.com\n\t\tpolicy B2C_1_susi")
	page := b.Follow(base + "/x")
	if !strings.Contains(page.Body, `id="rememberMe"`) {
		t.Fatalf("no Keep me signed in: %d", page.StatusCode)
	}
	signIn := b.Submit(page, map[string]string{"email": "ada@contoso.example", "password": "Passw0rd!", "rememberMe": "true"})
	var persistent []*http.Cookie
	for _, line := range signIn.Header.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(line); err == nil && c.MaxAge > 0 {
			persistent = append(persistent, &http.Cookie{Name: c.Name, Value: c.Value, Path: "/"})
		}
	}
	if landed := b.FollowResponse(signIn, ""); !strings.Contains(landed.Body, "name=Ada Lovelace") {
		t.Fatalf("sign-in: %d %q", landed.StatusCode, landed.Body)
	}
	restarted := testcaddy.NewBrowser(t)
	restarted.Jar.SetCookies(signIn.Request.URL, persistent)
	if landed := restarted.Follow(base + "/x"); landed.StatusCode != 200 || !strings.Contains(landed.Body, "name=Ada Lovelace") || landed.Request.URL.Path != "/x" {
		t.Errorf("back after the site's session ended: %d %s %q", landed.StatusCode, landed.Request.URL, landed.Body)
	}
}
