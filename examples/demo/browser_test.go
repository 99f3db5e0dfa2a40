package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/caddy-b2c/caddy-b2c/b2cemulator"
	"github.com/caddy-b2c/caddy-b2c/internal/testcaddy"
)

// browserContext starts a headless Chromium with an empty profile, flags
// that keep it off the network, and a 90-second budget.
func browserContext(t *testing.T, exe string, extra ...chromedp.ExecAllocatorOption) context.Context {
	// Chromium's helpers may still write to their profile as the browser
	// exits, so it is removed best-effort, not by t.TempDir.
	profile, err := os.MkdirTemp("", "b2c-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(profile) })
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile),
	)
	opts = append(opts, extra...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	return ctx
}

// formSite is a site whose /form page posts to /comments, which answers
// with the body it received; all behind b2c_auth.
const formSite = `
http://127.0.0.1:IDP {
	b2c_emulator {
		client CLIENT {
			redirect_uri SITE/.auth/login/b2c/callback
		}
	}
}
SITE {
	b2c_auth {
		authority http://127.0.0.1:IDP/contoso.onmicrosoft.com
		policy B2C_1_susi
		client_id CLIENT
	}
	header /form Content-Type "text/html; charset=utf-8"
	respond /form "<!DOCTYPE html><form method=post action=/comments><input id=comment name=comment><button id=send>Send</button></form>"
	respond /comments "posted: {http.request.body}"
}
`

// TestBrowserFormPostAfterSessionExpired: a person fills in a form, their
// session has meanwhile expired (its cookie is gone), they press Send: the
// sign-in happens (silently, through the provider's single sign-on) and
// the form arrives where it was going, as it was.
func TestBrowserFormPostAfterSessionExpired(t *testing.T) {
	exe := chromium(t)
	sitePort, idpPort := testcaddy.FreePort(t), testcaddy.FreePort(t)
	site := "http://localhost:" + itoa(sitePort)
	testcaddy.Start(t, testcaddy.Globals(t.TempDir())+strings.NewReplacer("IDP", itoa(idpPort), "SITE", site, "CLIENT", b2cemulator.DemoClientID).Replace(formSite))
	ctx := browserContext(t, exe)
	var text, url string
	err := chromedp.Run(ctx,
		chromedp.Navigate(site+"/form"),
		chromedp.WaitVisible(`#email`, chromedp.ByID),
		chromedp.SendKeys(`#email`, b2cemulator.DemoUserEmail, chromedp.ByID),
		chromedp.SendKeys(`#password`, b2cemulator.DemoUserPassword, chromedp.ByID),
		chromedp.Click(`#next`, chromedp.ByID),
		chromedp.WaitVisible(`#comment`, chromedp.ByID),
		// The session expires while the form is open.
		network.DeleteCookies("b2c_session").WithURL(site),
		chromedp.SendKeys(`#comment`, "hello from a person", chromedp.ByID),
		chromedp.Click(`#send`, chromedp.ByID),
		// The answer is plain text, which Chromium shows in a <pre>.
		chromedp.WaitVisible(`pre`, chromedp.ByQuery),
		chromedp.Text(`pre`, &text, chromedp.ByQuery),
		chromedp.Location(&url),
	)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	if !strings.Contains(text, "comment=hello+from+a+person") || url != site+"/comments" {
		t.Errorf("the form did not arrive after the sign-in: %q at %s", text, url)
	}
}

// httpsSite is the demo's pair on HTTPS: the emulator and a protected site
// with certificates from a CA made for the test, which the site trusts for
// the provider with tls_trust_pool.
const httpsSite = `
https://127.0.0.1:IDP {
	tls CERT KEY
	b2c_emulator {
		client CLIENT {
			redirect_uri SITE/.auth/login/b2c/callback
		}
	}
}
SITE {
	tls CERT KEY
	b2c_auth {
		authority https://127.0.0.1:IDP/contoso.onmicrosoft.com
		policy B2C_1_susi
		client_id CLIENT
		response_mode MODE
		tls_trust_pool file CA
	}
	header Content-Type "text/html; charset=utf-8"
	respond "<!DOCTYPE html><h1 id=hello>Hello, {http.auth.user.name}</h1><a id=signout href=/.auth/logout>Sign out</a>"
}
`

// TestBrowserHTTPS signs in with headless Chromium on HTTPS, in query and
// form_post modes (where the flow cookie must be SameSite=None; Secure to
// come back with the cross-site POST), checks the cookies the browser
// holds — the __Host- prefix, Secure, HttpOnly, SameSite=Lax — and signs
// out.
func TestBrowserHTTPS(t *testing.T) {
	exe := chromium(t)
	for _, mode := range []string{"query", "form_post"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			ca, cert, key := testcaddy.TestCA(t, dir)
			sitePort, idpPort := testcaddy.FreePort(t), testcaddy.FreePort(t)
			site := "https://localhost:" + itoa(sitePort)
			testcaddy.Start(t, testcaddy.GlobalsHTTPS(dir)+strings.NewReplacer("IDP", itoa(idpPort), "SITE", site, "CLIENT", b2cemulator.DemoClientID,
				"MODE", mode, "CERT", cert, "KEY", key, "CA", ca).Replace(httpsSite))
			ctx := browserContext(t, exe, chromedp.Flag("ignore-certificate-errors", true))
			var hello, url string
			var cookies []*network.Cookie
			err := chromedp.Run(ctx,
				chromedp.Navigate(site+"/"),
				chromedp.WaitVisible(`#email`, chromedp.ByID),
				chromedp.SendKeys(`#email`, b2cemulator.DemoUserEmail, chromedp.ByID),
				chromedp.SendKeys(`#password`, b2cemulator.DemoUserPassword, chromedp.ByID),
				chromedp.Click(`#next`, chromedp.ByID),
				chromedp.WaitVisible(`#hello`, chromedp.ByID),
				chromedp.Text(`#hello`, &hello, chromedp.ByID),
				chromedp.ActionFunc(func(ctx context.Context) error {
					var err error
					cookies, err = network.GetCookies().WithURLs([]string{site + "/"}).Do(ctx)
					return err
				}),
			)
			if err != nil {
				t.Fatalf("signing in: %v", err)
			}
			if hello != "Hello, Ada Lovelace" {
				t.Errorf("protected page: %q", hello)
			}
			var session *network.Cookie
			for _, c := range cookies {
				if c.Name == "__Host-b2c_session" {
					session = c
				}
				if strings.Contains(c.Name, "b2c_flow") {
					t.Errorf("flow cookie %s left after the sign-in", c.Name)
				}
			}
			if session == nil || !session.Secure || !session.HTTPOnly || session.SameSite != network.CookieSameSiteLax || session.Path != "/" || session.Domain != "localhost" {
				t.Fatalf("the session cookie: %+v (all: %v)", session, cookies)
			}
			err = chromedp.Run(ctx,
				chromedp.Click(`#signout`, chromedp.ByID),
				chromedp.WaitVisible(`#password`, chromedp.ByID),
				chromedp.Location(&url),
			)
			if err != nil || !strings.Contains(url, "/oauth2/v2.0/authorize") {
				t.Errorf("after sign-out: %v %s", err, url)
			}
		})
	}
}

// stepUpSite is a site whose /admin/* asks for the MFA policy.
const stepUpSite = `
http://127.0.0.1:IDP {
	b2c_emulator {
		policies B2C_1_susi B2C_1A_MFA
		mfa_policies B2C_1A_MFA
		client CLIENT {
			redirect_uri SITE/.auth/login/b2c/callback
		}
	}
}
SITE {
	b2c_auth {
		authority http://127.0.0.1:IDP/contoso.onmicrosoft.com
		policy B2C_1_susi
		client_id CLIENT
	}
	b2c_auth /admin/* {
		authority http://127.0.0.1:IDP/contoso.onmicrosoft.com
		policy B2C_1_susi
		client_id CLIENT
		require_policy B2C_1A_MFA
	}
	header Content-Type "text/html; charset=utf-8"
	respond "<!DOCTYPE html><h1 id=hello>{http.request.uri.path} as {http.auth.user.policy}</h1>"
}
`

// TestBrowserStepUp: in headless Chromium, a person signed in to the site
// opens /admin, which asks for the MFA policy: the emulator, through its
// single sign-on, asks only for the one-time code; the person lands on
// /admin with the upgraded session, and the rest of the site keeps it.
func TestBrowserStepUp(t *testing.T) {
	exe := chromium(t)
	sitePort, idpPort := testcaddy.FreePort(t), testcaddy.FreePort(t)
	site := "http://localhost:" + itoa(sitePort)
	testcaddy.Start(t, testcaddy.Globals(t.TempDir())+strings.NewReplacer("IDP", itoa(idpPort), "SITE", site, "CLIENT", b2cemulator.DemoClientID).Replace(stepUpSite))
	ctx := browserContext(t, exe)
	var home, admin, after string
	err := chromedp.Run(ctx,
		chromedp.Navigate(site+"/"),
		chromedp.WaitVisible(`#email`, chromedp.ByID),
		chromedp.SendKeys(`#email`, b2cemulator.DemoUserEmail, chromedp.ByID),
		chromedp.SendKeys(`#password`, b2cemulator.DemoUserPassword, chromedp.ByID),
		chromedp.Click(`#next`, chromedp.ByID),
		chromedp.WaitVisible(`#hello`, chromedp.ByID),
		chromedp.Text(`#hello`, &home, chromedp.ByID),
		chromedp.Navigate(site+"/admin/panel"),
		chromedp.WaitVisible(`#verificationCode`, chromedp.ByID),
	)
	if err != nil {
		t.Fatalf("browser, to the second factor: %v", err)
	}
	mailbox := testcaddy.NewBrowser(t).Get("http://127.0.0.1:" + itoa(idpPort) + "/contoso.onmicrosoft.com/emulator/mailbox")
	code := testcaddy.MailboxCode(t, mailbox.Body, b2cemulator.DemoUserEmail)
	err = chromedp.Run(ctx,
		chromedp.SendKeys(`#verificationCode`, code, chromedp.ByID),
		chromedp.Click(`#continue`, chromedp.ByID),
		chromedp.WaitVisible(`#hello`, chromedp.ByID),
		chromedp.Text(`#hello`, &admin, chromedp.ByID),
		chromedp.Navigate(site+"/"),
		chromedp.WaitVisible(`#hello`, chromedp.ByID),
		chromedp.Text(`#hello`, &after, chromedp.ByID),
	)
	if err != nil {
		t.Fatalf("browser, after the second factor: %v", err)
	}
	if home != "/ as B2C_1_susi" || admin != "/admin/panel as B2C_1A_MFA" || after != "/ as B2C_1A_MFA" {
		t.Errorf("the site %q, /admin %q, the site after %q", home, admin, after)
	}
}
