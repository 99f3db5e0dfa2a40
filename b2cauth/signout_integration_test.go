package b2cauth_test

import (
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/caddy-b2c/caddy-b2c/internal/testcaddy"
)

// TestFrontChannelLogoutFromTheProvider: the user signs out of another
// application of the same B2C session; the emulator's sign-out page loads
// this site's front-channel URL in an iframe, cross-site, so without the
// session cookie, and the site's session ends all the same.
func TestFrontChannelLogoutFromTheProvider(t *testing.T) {
	idp := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	site := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	testcaddy.Start(t, testcaddy.Globals(t.TempDir())+fmt.Sprintf(`
%[1]s {
	b2c_emulator {
		sid_claim
		client %[3]s {
			redirect_uri %[2]s/.auth/login/b2c/callback
			front_channel_logout_uri %[2]s/.auth/logout/frontchannel
		}
		client other-app {
			redirect_uri http://other.example/cb
		}
	}
}
%[2]s {
	b2c_auth {
		authority %[1]s/contoso.onmicrosoft.com
		policy B2C_1_susi
		client_id %[3]s
	}
	respond "name={http.auth.user.name}"
}
`, idp, site, clientID))
	b := testcaddy.NewBrowser(t)
	page := b.Follow(site + "/")
	landed := b.FollowResponse(b.Submit(page, map[string]string{"email": "ada@contoso.example", "password": "Passw0rd!"}), "")
	if !strings.Contains(landed.Body, "name=Ada Lovelace") {
		t.Fatalf("sign-in: %d %q", landed.StatusCode, landed.Body)
	}
	stolen := b.Copy(site)

	// The other application signs in through SSO, then signs out.
	authorize := idp + "/contoso.onmicrosoft.com/B2C_1_susi/oauth2/v2.0/authorize?" + url.Values{
		"client_id": {"other-app"}, "redirect_uri": {"http://other.example/cb"}, "response_type": {"code"},
		"scope": {"openid"}, "code_challenge": {"x"}, "code_challenge_method": {"plain"},
	}.Encode()
	if r := b.Get(authorize); r.StatusCode != http.StatusFound {
		t.Fatalf("SSO for the other app: %d", r.StatusCode)
	}
	out := b.Get(idp + "/contoso.onmicrosoft.com/B2C_1_susi/oauth2/v2.0/logout?client_id=other-app&post_logout_redirect_uri=" + url.QueryEscape("http://other.example/"))
	m := regexp.MustCompile(`<iframe class="front-channel-logout" src="([^"]*)"`).FindStringSubmatch(out.Body)
	if m == nil {
		t.Fatalf("no front-channel iframe for this site: %d\n%s", out.StatusCode, out.Body)
	}
	// The iframe is cross-site: SameSite=Lax cookies are not sent.
	frame := testcaddy.NewBrowser(t).Get(html.UnescapeString(m[1]))
	if frame.StatusCode != http.StatusOK {
		t.Fatalf("front-channel request: %d %s", frame.StatusCode, frame.Body)
	}
	if r := stolen.Get(site + "/"); r.StatusCode != http.StatusFound {
		t.Errorf("the session survives the provider's sign-out: %d %q", r.StatusCode, r.Body)
	}
}

// TestRedirectURIFromTrustedProxies: behind a load balancer that
// terminates TLS, the redirect URI is https when the forwarded headers come
// from the server's trusted_proxies, and only then.
func TestRedirectURIFromTrustedProxies(t *testing.T) {
	for _, trusted := range []bool{true, false} {
		t.Run(fmt.Sprint("trusted=", trusted), func(t *testing.T) {
			base := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
			globals := testcaddy.Globals(t.TempDir())
			if trusted {
				globals = strings.Replace(globals, "\tadmin off\n", "\tadmin off\n\tservers {\n\t\ttrusted_proxies static 127.0.0.1/8\n\t}\n", 1)
			}
			testcaddy.Start(t, globals+fmt.Sprintf(`
%[1]s {
	b2c_emulator
	b2c_auth {
		authority %[1]s/contoso.onmicrosoft.com
		policy B2C_1_susi
		client_id 6d4c8a31-2f1e-4b8a-9c57-0e3f1a2b4c5d
	}
}
`, base))
			req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
			req.Header.Set("Accept", "text/html")
			req.Header.Set("X-Forwarded-Proto", "https")
			req.Header.Set("X-Forwarded-Host", "www.example.com")
			resp, err := testcaddy.NewBrowser(t).Client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc, _ := url.Parse(resp.Header.Get("Location"))
			want := base + "/.auth/login/b2c/callback"
			if trusted {
				want = "https://www.example.com/.auth/login/b2c/callback"
			}
			if got := loc.Query().Get("redirect_uri"); got != want {
				t.Errorf("redirect_uri %q, want %q", got, want)
			}
		})
	}
}
