package b2cemulator_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-b2c/caddy-b2c/internal/testcaddy"
)

// signInWith signs in through the B2C_1_susi page with extra form fields
// and returns the sign-in's answer.
func (c *rp) signInWith(extra map[string]string) *testcaddy.Response {
	c.t.Helper()
	page := c.b.Get(c.authorizeURL("B2C_1_susi", nil))
	if !strings.Contains(page.Body, `id="localAccountForm"`) {
		c.t.Fatalf("no sign-in page: %d", page.StatusCode)
	}
	fields := map[string]string{"email": "ada@contoso.example", "password": "Passw0rd!"}
	for k, v := range extra {
		fields[k] = v
	}
	return c.b.Submit(page, fields)
}

// silentlySignedIn tells whether the authorize endpoint answers the
// browser from its single sign-on session, without a page.
func silentlySignedIn(c *rp, b *testcaddy.Browser) bool {
	c.t.Helper()
	res := b.Get(c.authorizeURL("B2C_1_susi", nil))
	return res.StatusCode == http.StatusFound && strings.Contains(res.Header.Get("Location"), "code=")
}

// ssoCookie is the single sign-on cookie a response sets.
func ssoCookie(t *testing.T, res *testcaddy.Response) *http.Cookie {
	t.Helper()
	for _, line := range res.Header.Values("Set-Cookie") {
		if c, err := http.ParseSetCookie(line); err == nil && strings.HasPrefix(c.Name, "x-ms-cpim-sso") {
			return c
		}
	}
	t.Fatalf("no single sign-on cookie in %v", res.Header.Values("Set-Cookie"))
	return nil
}

// TestKeepMeSignedIn: with keep_me_signed_in the sign-in page offers the
// checkbox; checked, the single sign-on session lives in a persistent
// cookie for that long and survives the browser's restart; unchecked, its
// cookie ends with the browser, and so does the single sign-on.
func TestKeepMeSignedIn(t *testing.T) {
	c := startEmulator(t, "keep_me_signed_in 720h")
	if page := c.b.Get(c.authorizeURL("B2C_1_susi", nil)); !strings.Contains(page.Body, `id="rememberMe"`) {
		t.Fatalf("no Keep me signed in on the sign-in page:\n%s", page.Body)
	}
	if page := c.b.Get(c.authorizeURL("B2C_1_reset", nil)); strings.Contains(page.Body, `id="rememberMe"`) {
		t.Error("Keep me signed in offered on password reset")
	}
	for _, tc := range []struct {
		checked bool
		maxAge  int
	}{{true, 720 * 3600}, {false, 0}} {
		c.b = testcaddy.NewBrowser(t)
		extra := map[string]string{}
		if tc.checked {
			extra["rememberMe"] = "true"
		}
		cookie := ssoCookie(t, c.signInWith(extra))
		if cookie.MaxAge != tc.maxAge {
			t.Errorf("checked %v: the cookie's Max-Age is %d, want %d", tc.checked, cookie.MaxAge, tc.maxAge)
		}
		restarted := testcaddy.NewBrowser(t) // keeps only persistent cookies
		if cookie.MaxAge > 0 {
			u, _ := url.Parse(c.base)
			restarted.Jar.SetCookies(u, []*http.Cookie{{Name: cookie.Name, Value: cookie.Value, Path: "/"}})
		}
		if silentlySignedIn(c, restarted) != tc.checked {
			t.Errorf("checked %v: after the browser's restart, signed in silently: %v", tc.checked, !tc.checked)
		}
	}
}

// TestSSOSessionTimeout: an absolute single sign-on session ends its
// lifetime after the sign-in whatever the use; a rolling one is extended by
// each single sign-on and ends its lifetime after the last.
func TestSSOSessionTimeout(t *testing.T) {
	const lifetime, margin = time.Second, 150 * time.Millisecond
	for _, timeout := range []string{"absolute", "rolling"} {
		t.Run(timeout, func(t *testing.T) {
			c := startEmulator(t, "sso_session_lifetime 1s\n\t\tsso_session_timeout "+timeout)
			signedIn := time.Now()
			c.signInWith(nil)
			// A single sign-on every half lifetime, for twice the lifetime.
			for range 4 {
				<-time.After(lifetime / 2) // the clock must pass; no server is awaited
				since := time.Since(signedIn)
				ok := silentlySignedIn(c, c.b)
				switch {
				case timeout == "rolling" && !ok:
					t.Fatalf("rolling: no single sign-on %s after sign-in, with one every %s", since.Round(time.Millisecond), lifetime/2)
				case timeout == "absolute" && since < lifetime-margin && !ok:
					t.Fatalf("absolute: no single sign-on %s after sign-in, within the lifetime", since.Round(time.Millisecond))
				case timeout == "absolute" && since > lifetime+margin && ok:
					t.Fatalf("absolute: single sign-on %s after sign-in, past the %s lifetime", since.Round(time.Millisecond), lifetime)
				}
			}
			if timeout == "rolling" {
				// Tokens from a single sign-on say when the user signed in.
				loc, _ := url.Parse(c.b.Get(c.authorizeURL("B2C_1_susi", nil)).Header.Get("Location"))
				_, body := c.redeem("B2C_1_susi", codeForm(loc.Query().Get("code")))
				idToken, _ := body["id_token"].(string)
				if authTime := c.verify("B2C_1_susi", idToken, secretClient)["auth_time"]; authTime != float64(signedIn.Unix()) && authTime != float64(signedIn.Unix()+1) {
					t.Errorf("auth_time %v after single sign-on, %s after the sign-in at %d", authTime, time.Since(signedIn).Round(time.Second), signedIn.Unix())
				}
			}
			last := time.Now()
			<-time.After(lifetime + margin)
			if silentlySignedIn(c, c.b) {
				t.Errorf("%s: single sign-on %s after the last one, past the %s lifetime", timeout, time.Since(last).Round(time.Millisecond), lifetime)
			}
		})
	}
}
