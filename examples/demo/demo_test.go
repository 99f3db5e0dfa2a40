package main

import (
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/chromedp/chromedp"

	"github.com/caddy-b2c/caddy-b2c/internal/testcaddy"
)

// chromium finds Debian's Chromium. Under CI it must be there; elsewhere the
// test is skipped without it, saying so.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testcaddy.Require(t, "Chromium", "apt-get install chromium", false)
	return ""
}

// TestBrowserSignInAndOut signs in through the emulator's HTML page in a
// headless Chromium, as a person would, sees the protected page with the
// user's name and claims, signs out and is sent to sign in again. It runs
// with both response modes: query, and form_post (a cross-site POST from
// 127.0.0.1 to localhost, where the SameSite=Lax flow cookie is not sent),
// and against the emulator speaking Entra External ID.
func TestBrowserSignInAndOut(t *testing.T) {
	exe := chromium(t)
	for _, tc := range []struct {
		mode, flavor string
		claims       []string // some of the claims the page must list
	}{
		{"query", "b2c", []string{"oid", "emails", "tfp", "B2C_1_susi", "given_name"}},
		{"form_post", "b2c", []string{"oid", "emails", "tfp", "B2C_1_susi", "given_name"}},
		{"query", "external_id", []string{"oid", "tid", "preferred_username", "ver"}},
	} {
		t.Run(tc.mode+"_"+tc.flavor, func(t *testing.T) {
			sitePort, idpPort := testcaddy.FreePort(t), testcaddy.FreePort(t)
			if err := Start(sitePort, idpPort, t.TempDir(), tc.mode, tc.flavor); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = caddy.Stop() })

			ctx := browserContext(t, exe)

			site := "http://localhost:" + itoa(sitePort)
			var name, email, claims, url string
			err := chromedp.Run(ctx,
				chromedp.Navigate(site+"/"),
				chromedp.WaitVisible(`#email`, chromedp.ByID),
				chromedp.Location(&url),
			)
			if err != nil {
				t.Fatalf("opening the site: %v", err)
			}
			if !strings.Contains(url, "127.0.0.1:"+itoa(idpPort)) || !strings.Contains(url, "/oauth2/v2.0/authorize") {
				t.Fatalf("not sent to the provider's sign-in page: %s", url)
			}
			err = chromedp.Run(ctx,
				chromedp.SendKeys(`#email`, "ada@contoso.example", chromedp.ByID),
				chromedp.SendKeys(`#password`, "Passw0rd!", chromedp.ByID),
				chromedp.Click(`#next`, chromedp.ByID),
				chromedp.WaitVisible(`#user-name`, chromedp.ByID),
				chromedp.Text(`#user-name`, &name, chromedp.ByID),
				chromedp.Text(`#email`, &email, chromedp.ByID),
				chromedp.Text(`#claims`, &claims, chromedp.ByID),
				chromedp.Location(&url),
			)
			if err != nil {
				t.Fatalf("signing in: %v", err)
			}
			if name != "Ada Lovelace" || email != "ada@contoso.example" || url != site+"/" {
				t.Errorf("protected page shows name %q email %q at %s", name, email, url)
			}
			for _, claim := range tc.claims {
				if !strings.Contains(claims, claim) {
					t.Errorf("claims table lacks %s:\n%s", claim, claims)
				}
			}

			// Signing out ends on a page that says so, with a way back in.
			err = chromedp.Run(ctx,
				chromedp.Click(`#signout`, chromedp.ByID),
				chromedp.WaitVisible(`#signed-out`, chromedp.ByID),
				chromedp.Location(&url),
				chromedp.Click(`#signin`, chromedp.ByID),
				chromedp.WaitVisible(`#password`, chromedp.ByID),
			)
			if err != nil {
				t.Fatalf("signing out: %v", err)
			}
			if !strings.HasSuffix(url, "/signed-out.html") {
				t.Errorf("after sign-out, at %s, want the signed-out page", url)
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestDemoRefusesATakenPort: a second demo (or anything else) already on
// the site's or the emulator's port: Start refuses, naming the address,
// instead of sharing the port with it (Caddy's listeners would, and half
// of the sign-ins would then fail with a misleading AADB2C90080).
func TestDemoRefusesATakenPort(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { taken.Close() })
	port := taken.Addr().(*net.TCPAddr).Port
	for name, ports := range map[string][2]int{"site": {port, testcaddy.FreePort(t)}, "emulator": {testcaddy.FreePort(t), port}} {
		err := Start(ports[0], ports[1], t.TempDir(), "query", "b2c")
		if err == nil {
			_ = caddy.Stop()
		}
		if err == nil || !strings.Contains(err.Error(), "127.0.0.1:"+strconv.Itoa(port)+": something already answers there") {
			t.Errorf("the %s's port taken: %v", name, err)
		}
	}
}
