package b2cauth_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-b2c/caddy-b2c/internal/testcaddy"
)

// stepUpSite runs the emulator and a site whose /admin/* block asks more
// than the site's: the same provider and client, so one session.
func stepUpSite(t *testing.T, emulator, provider, adminExtra string) string {
	idp := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	base := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	provider = strings.ReplaceAll(provider, "IDP", idp)
	testcaddy.Start(t, testcaddy.Globals(t.TempDir())+fmt.Sprintf(`
%[1]s {
	b2c_emulator {
		tenant_id %[4]s
		client %[3]s s3cret {
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
		%[6]s
		client_id %[3]s
		client_secret s3cret
	}
	b2c_auth /admin/* {
		%[6]s
		client_id %[3]s
		client_secret s3cret
		%[7]s
	}
	respond "user={http.auth.user.email} acrs={http.auth.user.acrs} policy={http.auth.user.policy}"
}
`, idp, base, clientID, emulatorTenantID, emulator, provider, adminExtra))
	return base
}

// secondFactor answers the emulator's one-time-code page and follows the
// way back to the site.
func secondFactor(t *testing.T, b *testcaddy.Browser, page *testcaddy.Response) *testcaddy.Response {
	t.Helper()
	return b.FollowResponse(b.SubmitSecondFactor(page, "ada@contoso.example"), "")
}

// TestStepUpThroughCaddy: a user signed in to the site opens /admin, whose
// block requires the authentication context c1 (Entra ID) or the MFA
// policy (B2C): the emulator asks for the second factor only, through its
// single sign-on, and the user lands on /admin with the upgraded session,
// which the rest of the site keeps; signing out everywhere refuses it like
// any other session.
func TestStepUpThroughCaddy(t *testing.T) {
	for name, tc := range map[string]struct{ emulator, provider, admin, want string }{
		"auth context": {"flavor entra_id\n\t\tauth_contexts c1", "issuer IDP/contoso.onmicrosoft.com/v2.0", "require_auth_context c1", "acrs=c1"},
		"MFA policy":   {"policies B2C_1_susi B2C_1A_MFA\n\t\tmfa_policies B2C_1A_MFA", "authority IDP/contoso.onmicrosoft.com\n\t\tpolicy B2C_1_susi", "require_policy B2C_1A_MFA", "policy=B2C_1A_MFA"},
	} {
		t.Run(name, func(t *testing.T) {
			base := stepUpSite(t, tc.emulator, tc.provider, tc.admin)
			b := testcaddy.NewBrowser(t)
			if landed := signInAs(t, b, base+"/", "ada@contoso.example"); landed.StatusCode != 200 || strings.Contains(landed.Body, tc.want) {
				t.Fatalf("the site: %d %q", landed.StatusCode, landed.Body)
			}
			page := b.Follow(base + "/admin/panel?x=1")
			admin := secondFactor(t, b, page)
			if admin.StatusCode != 200 || !strings.Contains(admin.Body, tc.want) || admin.Request.URL.RequestURI() != "/admin/panel?x=1" {
				t.Fatalf("/admin after the step-up: %d %q at %s", admin.StatusCode, admin.Body, admin.Request.URL)
			}
			if again := b.Get(base + "/admin/other"); again.StatusCode != 200 {
				t.Errorf("/admin again: %d, want no second step-up", again.StatusCode)
			}
			if site := b.Get(base + "/"); site.StatusCode != 200 || !strings.Contains(site.Body, tc.want) {
				t.Errorf("the rest of the site with the upgraded session: %d %q", site.StatusCode, site.Body)
			}
			// Sign out everywhere: the upgraded session is refused, on
			// a copy of the cookie kept from before too.
			kept := testcaddy.NewBrowser(t)
			u, _ := url.Parse(base)
			kept.Jar.SetCookies(u, b.Jar.Cookies(u))
			out, _ := http.NewRequest(http.MethodGet, base+"/.auth/logout?everywhere=1", nil)
			out.Header.Set("Sec-Fetch-Site", "same-origin") // the site's own "Sign out everywhere" link
			if resp, err := b.Client.Do(out); err != nil || resp.StatusCode >= 400 {
				t.Fatalf("sign out everywhere: %v %v", resp, err)
			}
			if after := kept.Get(base + "/admin/panel"); after.StatusCode != http.StatusFound {
				t.Errorf("the upgraded session after signing out everywhere: %d", after.StatusCode)
			}
		})
	}
}
