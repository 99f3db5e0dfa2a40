package b2cemulator_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-b2c/caddy-b2c/internal/testcaddy"
)

// post sends one of the emulator's own forms as another client would:
// the page's hidden fields, with these fields, and these headers.
func (c *rp) post(page *testcaddy.Response, fields map[string]string, headers map[string]string) *testcaddy.Response {
	c.t.Helper()
	_, form := testcaddy.Form(c.t, page.Body)
	for k, v := range fields {
		form.Set(k, v)
	}
	req, _ := http.NewRequest(http.MethodPost, page.Request.URL.String(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := c.b.Client.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return &testcaddy.Response{Response: resp, Body: string(body)}
}

// TestPasswordResetNeedsTheEmailCode: the attack was to post the reset
// form with any user's email and a new password, and be signed in as that
// user. Now the reset needs the code sent to the address: without it, with
// a wrong one, or with another address's, nothing changes; three wrong
// tries spend the code.
func TestPasswordResetNeedsTheEmailCode(t *testing.T) {
	c := startEmulator(t, "")
	reset := c.b.Get(c.authorizeURL("B2C_1_reset", nil))
	// Step 1 does not even show the password fields before a code is sent.
	if strings.Contains(reset.Body, `name="password"`) {
		t.Fatal("the reset page takes a new password before the email is verified")
	}
	attack := map[string]string{"action": "reset", "email": "ada@contoso.example", "password": "0wn3d-by-evil", "password_confirm": "0wn3d-by-evil"}
	for name, code := range map[string]string{"no code": "", "a guessed code": "123456"} {
		attack["code"] = code
		if res := c.post(reset, attack, nil); res.StatusCode != http.StatusOK || !strings.Contains(res.Body, `id="errorMessage"`) {
			t.Errorf("%s: %d, want the page with an error", name, res.StatusCode)
		}
	}
	// A code sent to the attacker's own (signed-up) address is not the victim's.
	c.b.SubmitVerified(c.b.Get(testcaddy.Link(t, c.b.Get(c.authorizeURL("B2C_1_susi", nil)), "createAccount")), "mallory@example.org",
		map[string]string{"password": "Mall0ry!!", "password_confirm": "Mall0ry!!"})
	resetAgain := c.b.Get(c.authorizeURL("B2C_1_reset", nil))
	c.b.Submit(resetAgain, map[string]string{"email": "mallory@example.org"})
	mailbox := c.b.Get(testcaddy.Link(t, resetAgain, "mailbox")).Body
	attack["code"] = testcaddy.MailboxCode(t, mailbox, "mallory@example.org")
	if res := c.post(reset, attack, nil); !strings.Contains(res.Body, `id="errorMessage"`) {
		t.Errorf("another address's code reset the victim's password: %d", res.StatusCode)
	}
	// The victim's password is unchanged: the old one signs in.
	c.b = testcaddy.NewBrowser(t)
	c.signIn(c.authorizeURL("B2C_1_susi", nil), "ada@contoso.example", "Passw0rd!")

	// Three wrong tries spend a real code.
	victim := c.b.Get(c.authorizeURL("B2C_1_reset", nil))
	sent := c.b.Submit(victim, map[string]string{"email": "ada@contoso.example"})
	real := testcaddy.MailboxCode(t, c.b.Get(testcaddy.Link(t, victim, "mailbox")).Body, "ada@contoso.example")
	wrong := "000000"
	if real == wrong {
		wrong = "111111"
	}
	var last *testcaddy.Response
	for range 3 {
		last = c.b.Submit(sent, map[string]string{"code": wrong, "password": "N3wPassw0rd", "password_confirm": "N3wPassw0rd"})
	}
	if !strings.Contains(last.Body, "too many incorrect attempts") {
		t.Errorf("after three wrong codes: %s", last.Body)
	}
	if res := c.b.Submit(sent, map[string]string{"code": real, "password": "N3wPassw0rd", "password_confirm": "N3wPassw0rd"}); res.StatusCode != http.StatusOK || !strings.Contains(res.Body, `id="errorMessage"`) {
		t.Errorf("the spent code still works: %d", res.StatusCode)
	}
}

// TestSignUpNeedsTheEmailCode: an account is created only for an address
// whose code was typed in.
func TestSignUpNeedsTheEmailCode(t *testing.T) {
	c := startEmulator(t, "")
	signup := c.b.Get(testcaddy.Link(t, c.b.Get(c.authorizeURL("B2C_1_susi", nil)), "createAccount"))
	res := c.post(signup, map[string]string{"action": "signup", "email": "ceo@victim.example", "password": "Passw0rd!!", "password_confirm": "Passw0rd!!"}, nil)
	if res.StatusCode != http.StatusOK || !strings.Contains(res.Body, "verify your email address") {
		t.Errorf("sign-up without a code: %d", res.StatusCode)
	}
	if page := c.b.Get(c.authorizeURL("B2C_1_susi", nil)); !strings.Contains(c.b.Submit(page, map[string]string{"email": "ceo@victim.example", "password": "Passw0rd!!"}).Body, "find your account") {
		t.Error("an account was created without proof of its email")
	}
}

// TestCrossSitePostsRefused: a web page the developer visits cannot post
// the emulator's forms (sign in as someone, sign up, reset) to it.
func TestCrossSitePostsRefused(t *testing.T) {
	c := startEmulator(t, "")
	page := c.b.Get(c.authorizeURL("B2C_1_susi", nil))
	signin := map[string]string{"email": "ada@contoso.example", "password": "Passw0rd!"}
	for name, headers := range map[string]map[string]string{
		"cross-site":     {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.com"},
		"foreign Origin": {"Origin": "http://evil.com"},
		"same-site":      {"Sec-Fetch-Site": "same-site", "Origin": "http://sub.127.0.0.1.nip.io"},
	} {
		if res := c.post(page, signin, headers); res.StatusCode != http.StatusForbidden {
			t.Errorf("%s sign-in post: %d, want 403", name, res.StatusCode)
		}
	}
	// Its own page's post works: same-origin, with Origin "null" as
	// browsers send it under the pages' Referrer-Policy no-referrer.
	for _, origin := range []string{c.base, "null"} {
		c.b = testcaddy.NewBrowser(t) // no single sign-on session yet
		page := c.b.Get(c.authorizeURL("B2C_1_susi", nil))
		if res := c.post(page, signin, map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": origin}); res.StatusCode != http.StatusFound {
			t.Errorf("a same-origin sign-in (Origin %s): %d", origin, res.StatusCode)
		}
	}
}

// TestAdminEndpointsNeedTheKey: key rotation needs the admin key, and not
// from another site.
func TestAdminEndpointsNeedTheKey(t *testing.T) {
	c := startEmulator(t, "")
	for name, res := range map[string]*http.Response{
		"no key":                 c.rotateKeys("", ""),
		"a wrong key":            c.rotateKeys("guess", ""),
		"the key, from evil.com": c.rotateKeys("test-admin-key", "http://evil.com"),
		"no key, from evil.com":  c.rotateKeys("", "http://evil.com"),
	} {
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, res.StatusCode)
		}
	}
	if res := c.rotateKeys("test-admin-key", ""); res.StatusCode != http.StatusOK {
		t.Errorf("with the key: %d", res.StatusCode)
	}
}

// TestEmulatorRefusesForeignHosts: the attack — the emulator bound to a
// host-less address (caddy b2c emulator --listen :9000), a DNS-rebinding
// page on the attacker's name read the mailbox code through the victim's
// browser and reset a user's password. Every page and endpoint now answers
// only a loopback address, localhost or a name of its site.
func TestEmulatorRefusesForeignHosts(t *testing.T) {
	port := testcaddy.FreePort(t)
	testcaddy.Start(t, testcaddy.Globals(t.TempDir())+fmt.Sprintf("http://:%d {\n\tbind 127.0.0.1\n\tb2c_emulator\n\trespond \"not the emulator\" 404\n}\nhttp://emulator.test:%[1]d {\n\tbind 127.0.0.1\n\tb2c_emulator\n}\n", port))
	get := func(host, path string) int {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", port, path), nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	pages := []string{"/contoso.onmicrosoft.com/emulator/mailbox", "/contoso.onmicrosoft.com/B2C_1_susi/v2.0/.well-known/openid-configuration",
		"/contoso.onmicrosoft.com/B2C_1_susi/oauth2/v2.0/authorize?client_id=x", "/contoso.onmicrosoft.com/discovery/v2.0/keys?p=B2C_1_susi"}
	for _, path := range pages {
		for _, host := range []string{"rebind.attacker.example", fmt.Sprintf("rebind.attacker.example:%d", port), "192.0.2.1"} {
			if code := get(host, path); code != http.StatusForbidden {
				t.Errorf("Host %s, %s: %d, want 403", host, path, code)
			}
		}
		for _, host := range []string{fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("localhost:%d", port), fmt.Sprintf("[::1]:%d", port), fmt.Sprintf("emulator.test:%d", port)} {
			if code := get(host, path); code == http.StatusForbidden {
				t.Errorf("Host %s, %s: 403, want it answered", host, path)
			}
		}
	}
	// What is not the emulator's is not its to refuse.
	if code := get("rebind.attacker.example", "/elsewhere"); code != http.StatusNotFound {
		t.Errorf("another path on a foreign Host: %d, want the next handler's 404", code)
	}
}
