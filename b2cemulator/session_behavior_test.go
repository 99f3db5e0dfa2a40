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

// advanceClock moves the emulator's clock ahead (POST …/emulator/clock,
// with the admin key), so that lifetimes pass without waiting.
func (c *rp) advanceClock(by time.Duration) {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.base+tenantPath+"/emulator/clock?advance="+by.String(), nil)
	req.Header.Set("Authorization", "Bearer test-admin-key")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("moving the emulator's clock: %d", resp.StatusCode)
	}
}

// TestSSOSessionTimeout: an absolute single sign-on session ends its
// lifetime after the sign-in whatever the use; a rolling one is extended by
// each single sign-on and ends its lifetime after the last. The emulator's
// clock is moved, nothing waits.
func TestSSOSessionTimeout(t *testing.T) {
	const lifetime, step = time.Minute, 25 * time.Second
	for _, timeout := range []string{"absolute", "rolling"} {
		t.Run(timeout, func(t *testing.T) {
			c := startEmulator(t, "sso_session_lifetime 1m\n\t\tsso_session_timeout "+timeout)
			signedIn := time.Now()
			c.signInWith(nil)
			// A single sign-on every step, for twice the lifetime.
			var since time.Duration
			for range 4 {
				c.advanceClock(step)
				since += step
				ok := silentlySignedIn(c, c.b)
				switch {
				case timeout == "rolling" && !ok:
					t.Fatalf("rolling: no single sign-on %s after sign-in, with one every %s", since, step)
				case timeout == "absolute" && since < lifetime && !ok:
					t.Fatalf("absolute: no single sign-on %s after sign-in, within the lifetime", since)
				case timeout == "absolute" && since > lifetime && ok:
					t.Fatalf("absolute: single sign-on %s after sign-in, past the %s lifetime", since, lifetime)
				}
			}
			if timeout == "rolling" {
				// Tokens from a single sign-on say when the user signed in.
				loc, _ := url.Parse(c.b.Get(c.authorizeURL("B2C_1_susi", nil)).Header.Get("Location"))
				_, body := c.redeem("B2C_1_susi", codeForm(loc.Query().Get("code")))
				idToken, _ := body["id_token"].(string)
				if authTime := c.verify("B2C_1_susi", idToken, secretClient)["auth_time"]; authTime != float64(signedIn.Unix()) && authTime != float64(signedIn.Unix()+1) {
					t.Errorf("auth_time %v after single sign-on, %s after the sign-in at %d", authTime, since, signedIn.Unix())
				}
			}
			c.advanceClock(lifetime + time.Second)
			if silentlySignedIn(c, c.b) {
				t.Errorf("%s: single sign-on past the %s lifetime after the last one", timeout, lifetime)
			}
		})
	}
}

// TestEmulatorClockNeedsTheAdminKey: the clock moves only with the admin
// key, only ahead, and says what time it is.
func TestEmulatorClockNeedsTheAdminKey(t *testing.T) {
	c := startEmulator(t, "")
	post := func(query, key string) int {
		req, _ := http.NewRequest(http.MethodPost, c.base+tenantPath+"/emulator/clock"+query, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for name, tc := range map[string]struct {
		query, key string
		want       int
	}{
		"no key":     {"?advance=1h", "", http.StatusUnauthorized},
		"wrong key":  {"?advance=1h", "guess", http.StatusUnauthorized},
		"backwards":  {"?advance=-1h", "test-admin-key", http.StatusBadRequest},
		"no advance": {"", "test-admin-key", http.StatusBadRequest},
		"ahead":      {"?advance=1h", "test-admin-key", http.StatusOK},
	} {
		if got := post(tc.query, tc.key); got != tc.want {
			t.Errorf("%s: %d, want %d", name, got, tc.want)
		}
	}
}
