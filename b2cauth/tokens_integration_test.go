package b2cauth_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-b2c/caddy-b2c/internal/testcaddy"
)

// TestTokensUpstreamNeverInLogs: an app behind reverse_proxy gets the
// session's access token (header_up Authorization) and App Service's token
// headers, without the handler's cookies; with access logging on, no
// token, cookie or authorization code appears in any log line.
func TestTokensUpstreamNeverInLogs(t *testing.T) {
	dir := t.TempDir()
	accessLog, serverLog := filepath.Join(dir, "access.log"), filepath.Join(dir, "caddy.log")
	up := echoUpstream(t)
	idp := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	base := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	globals := strings.Replace(testcaddy.Globals(dir), "level ERROR", fmt.Sprintf("level INFO\n\t\toutput file %q", serverLog), 1)
	testcaddy.Start(t, globals+fmt.Sprintf(`
%[1]s {
	b2c_emulator {
		client %[3]s {
			redirect_uri %[2]s/.auth/login/b2c/callback
		}
	}
}
%[2]s {
	log {
		output file %[4]q
	}
	b2c_auth {
		authority %[1]s/contoso.onmicrosoft.com
		policy B2C_1_susi
		client_id %[3]s
		scopes openid offline_access %[3]s
		easy_auth_headers
	}
	reverse_proxy %[5]s {
		header_up Authorization "Bearer {http.auth.b2c.access_token}"
		header_up X-Email {http.auth.user.email}
	}
}
`, idp, base, clientID, accessLog, strings.TrimPrefix(up, "http://")))

	b := testcaddy.NewBrowser(t)
	page := b.Follow(base + "/app")
	back := b.Submit(page, map[string]string{"email": "ada@contoso.example", "password": "Passw0rd!"})
	cb, _ := url.Parse(back.Header.Get("Location"))
	code := cb.Query().Get("code")
	landed := b.FollowResponse(back, "")
	var seen http.Header
	if err := json.Unmarshal([]byte(landed.Body), &seen); err != nil {
		t.Fatalf("upstream answer: %d %q", landed.StatusCode, landed.Body)
	}
	accessToken, idToken := sessionTokens(t, b, base)
	if code == "" {
		t.Fatalf("no tokens or code to look for: %q %q %q", accessToken, idToken, code)
	}

	if seen.Get("Authorization") != "Bearer "+accessToken || seen.Get("X-Ms-Token-Aad-Access-Token") != accessToken ||
		seen.Get("X-Ms-Token-Aad-Id-Token") != idToken || seen.Get("X-Email") != "ada@contoso.example" {
		t.Errorf("upstream headers: %v", seen)
	}
	if c := seen.Get("Cookie"); strings.Contains(c, "b2c_") {
		t.Errorf("the handler's cookies went upstream: %q", c)
	}

	u, _ := url.Parse(base)
	secrets := map[string]string{"access token": accessToken, "ID token": idToken, "code": code}
	for _, c := range b.Jar.Cookies(u) {
		secrets["cookie "+c.Name] = c.Value
	}
	b.Follow(base + "/.auth/logout")
	for _, file := range []string{accessLog, serverLog} {
		data, err := os.ReadFile(file)
		if err != nil || len(data) == 0 {
			t.Fatalf("log %s: %v (empty: the test would prove nothing)", file, err)
		}
		for what, secret := range secrets {
			if len(secret) > 8 && strings.Contains(string(data), secret) {
				t.Errorf("%s appears in %s", what, filepath.Base(file))
			}
		}
	}
}

// TestHintsReachTheEmulator: /.auth/login's hints arrive at the provider's
// page: the email filled in, the language, the social provider asked for.
func TestHintsReachTheEmulator(t *testing.T) {
	base, b := tenantSite(t, "", "")
	page := b.Follow(base + "/.auth/login?" + url.Values{"login_hint": {"ada@contoso.example"}, "ui_locales": {"fr-FR"}, "domain_hint": {"facebook.com"}}.Encode())
	for _, want := range []string{`value="ada@contoso.example"`, "Se connecter", `id="domainHint"`, "facebook.com"} {
		if !strings.Contains(page.Body, want) {
			t.Errorf("the sign-in page lacks %s:\n%s", want, page.Body)
		}
	}
}

// TestAutomaticRenewalWithTheEmulator: with one-minute tokens, a request
// renews the session (a new cookie, an access token upstream that the
// emulator's keys verify); once the provider revokes the refresh token (a
// password reset), the next request signs the old session out cleanly.
func TestAutomaticRenewalWithTheEmulator(t *testing.T) {
	idp := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	base := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	testcaddy.Start(t, testcaddy.Globals(t.TempDir())+fmt.Sprintf(`
%[1]s {
	b2c_emulator {
		token_lifetime 1m
		client %[3]s {
			redirect_uri %[2]s/.auth/login/b2c/callback
		}
	}
}
%[2]s {
	b2c_auth {
		authority %[1]s/contoso.onmicrosoft.com
		policy B2C_1_susi
		password_reset_policy B2C_1_reset
		client_id %[3]s
		scopes openid offline_access %[3]s
	}
	respond "exp={http.auth.b2c.access_token_expires} name={http.auth.user.name}"
}
`, idp, base, clientID))
	b := testcaddy.NewBrowser(t)
	landed := signInAs(t, b, base+"/", "ada@contoso.example")
	if !strings.Contains(landed.Body, "name=Ada Lovelace") || strings.Contains(landed.Body, "exp= ") {
		t.Fatalf("after sign-in: %q", landed.Body)
	}
	// The access token expires within the 5-minute margin: the request that
	// sees it renews it and sets the new session cookie.
	if !hasSessionCookie(landed.Response) {
		t.Error("the first request after sign-in did not renew the one-minute tokens")
	}
	for range 2 { // the renewed session keeps serving (renewing again: its tokens last a minute)
		if again := b.Get(base + "/"); again.StatusCode != 200 || !strings.Contains(again.Body, "name=Ada Lovelace") {
			t.Fatalf("with the renewed cookie: %d %q", again.StatusCode, again.Body)
		}
	}
	old := b.Copy(base)
	reset := b.Follow(base + "/.auth/login/reset")
	b.FollowResponse(b.SubmitVerified(reset, "ada@contoso.example", map[string]string{"password": "N3wPassw0rd", "password_confirm": "N3wPassw0rd"}), "")
	// The old session's refresh token is revoked (AADB2C90129): its next
	// renewal fails, and the old session is signed out, not a 500.
	r := old.Get(base + "/")
	if r.StatusCode != http.StatusFound || !strings.Contains(r.Header.Get("Location"), "/authorize") {
		t.Errorf("a refused renewal: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
}

func hasSessionCookie(resp *http.Response) bool {
	for _, c := range resp.Cookies() {
		if c.Name == "b2c_session" && c.MaxAge >= 0 && c.Value != "" {
			return true
		}
	}
	return false
}

// sessionTokens are the access and ID tokens of the browser's session, as
// /.auth/me gives them.
func sessionTokens(t *testing.T, b *testcaddy.Browser, base string) (accessToken, idToken string) {
	t.Helper()
	me := b.Get(base + "/.auth/me")
	var entries []map[string]any
	if json.Unmarshal([]byte(me.Body), &entries) != nil || len(entries) != 1 {
		t.Fatalf("/.auth/me: %d %s", me.StatusCode, me.Body)
	}
	accessToken, _ = entries[0]["access_token"].(string)
	idToken, _ = entries[0]["id_token"].(string)
	if accessToken == "" || idToken == "" {
		t.Fatalf("/.auth/me has no tokens: %s", me.Body)
	}
	return accessToken, idToken
}

// TestRefreshRefusedByTheEmulator: the emulator answers a user's refresh
// grants with interaction_required (a Conditional Access step-up, with a
// claims challenge) or with 503. Right after a sign-in, interaction
// required again is a block: a page says so and the session ends, instead
// of a sign-in loop. A provider that fails keeps the session on its live
// tokens, with one grant per backoff step however many requests come.
func TestRefreshRefusedByTheEmulator(t *testing.T) {
	idp := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	base := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", testcaddy.FreePort(t))
	testcaddy.Start(t, testcaddy.Globals(t.TempDir())+fmt.Sprintf(`
%[1]s {
	b2c_emulator {
		token_lifetime 1m
		client %[3]s {
			redirect_uri %[2]s/.auth/login/b2c/callback
		}
		user mfa@contoso.example Passw0rd! {
			refresh_error interaction_required `+"`"+`{"access_token":{"acrs":{"essential":true,"value":"c1"}}}`+"`"+`
		}
		user mfa2@contoso.example Passw0rd! {
			refresh_error invalid_grant `+"`"+`{"access_token":{"capolids":{"essential":true,"values":["p1"]}}}`+"`"+`
		}
		user flaky@contoso.example Passw0rd! {
			refresh_error unavailable
		}
	}
}
%[2]s {
	b2c_auth {
		authority %[1]s/contoso.onmicrosoft.com
		policy B2C_1_susi
		client_id %[3]s
		scopes openid offline_access %[3]s
	}
	respond "hello {http.auth.user.email}"
}
%[4]s {
	metrics
}
`, idp, base, clientID, strings.TrimSuffix(metricsURL, "/metrics")))

	b := testcaddy.NewBrowser(t)
	blocked := signInAs(t, b, base+"/", "mfa@contoso.example")
	if blocked.StatusCode != http.StatusForbidden || !strings.Contains(blocked.Body, "Access blocked") {
		t.Errorf("interaction required right after sign-in: %d %q", blocked.StatusCode, blocked.Body)
	}
	if again := b.Get(base + "/"); again.StatusCode != http.StatusFound || !strings.Contains(again.Header.Get("Location"), "/authorize") {
		t.Errorf("after the block, the session is over: %d %q", again.StatusCode, again.Header.Get("Location"))
	}
	// The same refusal in the shape real answers have: invalid_grant with a
	// Conditional Access suberror and claims, under the same loop guard.
	if blocked := signInAs(t, testcaddy.NewBrowser(t), base+"/", "mfa2@contoso.example"); blocked.StatusCode != http.StatusForbidden || !strings.Contains(blocked.Body, "Access blocked") {
		t.Errorf("invalid_grant with suberror right after sign-in: %d %q", blocked.StatusCode, blocked.Body)
	}

	before := scrape(t, metricsURL)
	flaky := testcaddy.NewBrowser(t)
	if landed := signInAs(t, flaky, base+"/", "flaky@contoso.example"); landed.StatusCode != 200 || !strings.Contains(landed.Body, "hello flaky@") {
		t.Fatalf("while renewals fail, on live tokens: %d %q", landed.StatusCode, landed.Body)
	}
	for range 4 {
		if r := flaky.Get(base + "/"); r.StatusCode != 200 {
			t.Fatalf("while renewals fail: %d", r.StatusCode)
		}
	}
	after := scrape(t, metricsURL)
	failed := after[`caddy_b2c_auth_refreshes_total{result="failed"}`] - before[`caddy_b2c_auth_refreshes_total{result="failed"}`]
	backoff := after[`caddy_b2c_auth_refreshes_total{result="backoff"}`] - before[`caddy_b2c_auth_refreshes_total{result="backoff"}`]
	if failed != 1 || backoff != 4 {
		t.Errorf("5 requests while the provider fails: %v grants failed, %v waited for the backoff; want 1 and 4", failed, backoff)
	}
}

// debugLogFilter is the `log` filter of docs/operations.md: with debug logging on,
// reverse_proxy prints the headers it sends upstream, and Caddy redacts only
// Cookie and Authorization-type ones; this removes App Service's token and
// principal headers from those lines.
const debugLogFilter = `format filter {
			wrap json
			fields {
				request>headers>X-Ms-Token-Aad-Id-Token delete
				request>headers>X-Ms-Token-Aad-Access-Token delete
				request>headers>X-Ms-Client-Principal delete
				request>headers>X-B2c-Identity-Assertion delete
			}
		}`

// TestDebugLogsHoldNoTokens: with Caddy's debug logging on, a sign-in
// through reverse_proxy with easy_auth_headers and a token placeholder;
// b2c_auth warns at start that debug lines print upstream headers, and with
// that filter no log line holds a token, the session cookie, the
// code or the principal. (Without the filter, this test fails: Caddy
// prints the token and principal headers at debug level.)
func TestDebugLogsHoldNoTokens(t *testing.T) {
	dir := t.TempDir()
	serverLog := filepath.Join(dir, "caddy.log")
	up := echoUpstream(t)
	idp := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	base := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	globals := strings.Replace(testcaddy.Globals(dir), "level ERROR", fmt.Sprintf("level DEBUG\n\t\toutput file %q\n\t\t%s", serverLog, debugLogFilter), 1)
	testcaddy.Start(t, globals+fmt.Sprintf(`
%[1]s {
	b2c_emulator {
		client %[3]s {
			redirect_uri %[2]s/.auth/login/b2c/callback
		}
	}
}
%[2]s {
	b2c_auth {
		authority %[1]s/contoso.onmicrosoft.com
		policy B2C_1_susi
		client_id %[3]s
		scopes openid offline_access %[3]s
		easy_auth_headers
		identity_assertion
	}
	reverse_proxy %[4]s {
		header_up Authorization "Bearer {http.auth.b2c.access_token}"
	}
}
`, idp, base, clientID, strings.TrimPrefix(up, "http://")))

	b := testcaddy.NewBrowser(t)
	page := b.Follow(base + "/app")
	back := b.Submit(page, map[string]string{"email": "ada@contoso.example", "password": "Passw0rd!"})
	cb, _ := url.Parse(back.Header.Get("Location"))
	code := cb.Query().Get("code")
	seen := upstreamHeaders(t, b.FollowResponse(back, ""))
	accessToken, idToken := sessionTokens(t, b, base)
	principal, assertion := seen.Get("X-Ms-Client-Principal"), seen.Get("X-B2C-Identity-Assertion")
	if seen.Get("X-Ms-Token-Aad-Access-Token") != accessToken || principal == "" || assertion == "" || code == "" {
		t.Fatalf("upstream headers: %v", seen)
	}
	u, _ := url.Parse(base)
	secrets := map[string]string{"access token": accessToken, "ID token": idToken, "code": code, "principal": principal, "assertion": assertion}
	for _, c := range b.Jar.Cookies(u) {
		secrets["cookie "+c.Name] = c.Value
	}
	b.Follow(base + "/.auth/logout")

	data, err := os.ReadFile(serverLog)
	if err != nil {
		t.Fatal(err)
	}
	log := string(data)
	// The test proves something only if the debug lines are there.
	if !strings.Contains(log, `"upstream roundtrip"`) || !strings.Contains(log, "debug logging prints the headers") {
		t.Fatalf("no upstream roundtrip line or no start-up warning in the debug log:\n%s", log)
	}
	for what, secret := range secrets {
		if len(secret) > 8 && strings.Contains(log, secret) {
			t.Errorf("%s appears in the debug log", what)
		}
	}
	// Every part of a token counts: a JWT's signature alone is a token's
	// fingerprint, its payload the user's claims.
	for _, tok := range []string{accessToken, idToken, assertion} {
		for _, part := range strings.Split(tok, ".") {
			if len(part) > 16 && strings.Contains(log, part) {
				t.Errorf("a part of a token appears in the debug log")
			}
		}
	}
}

// TestAssertionVerifiedByPyJWT: an app written with PyJWT (which nobody
// here wrote) verifies the identity assertion with the site's /.auth/keys,
// and refuses a forged one and one for another audience.
func TestAssertionVerifiedByPyJWT(t *testing.T) {
	python := "/usr/bin/python3"
	_, err := os.Stat("/usr/lib/python3/dist-packages/jwt")
	testcaddy.Require(t, "python3-jwt", "apt-get install python3-jwt", err == nil)
	up := echoUpstream(t)
	idp := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	base := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	testcaddy.Start(t, testcaddy.Globals(t.TempDir())+fmt.Sprintf(`
%[1]s {
	b2c_emulator {
		client %[3]s {
			redirect_uri %[2]s/.auth/login/b2c/callback
		}
	}
}
%[2]s {
	b2c_auth {
		authority %[1]s/contoso.onmicrosoft.com
		policy B2C_1_susi
		client_id %[3]s
		identity_assertion
	}
	reverse_proxy %[4]s
}
`, idp, base, clientID, strings.TrimPrefix(up, "http://")))
	b := testcaddy.NewBrowser(t)
	page := b.Follow(base + "/app")
	seen := upstreamHeaders(t, b.FollowResponse(b.Submit(page, map[string]string{"email": "ada@contoso.example", "password": "Passw0rd!"}), ""))
	token := seen.Get("X-B2C-Identity-Assertion")
	verify := func(token, audience string) map[string]string {
		out, err := exec.Command(python, filepath.Join("..", "testdata", "jwt", "verify_assertion.py"), base+"/.auth/keys", token, base, audience).Output()
		var res map[string]string
		if err != nil || json.Unmarshal(out, &res) != nil {
			t.Fatalf("PyJWT: %v %s", err, out)
		}
		return res
	}
	if res := verify(token, base); res["sub"] == "" || res["email"] != "ada@contoso.example" {
		t.Errorf("PyJWT does not verify the assertion: %v", res)
	}
	if res := verify(token, "https://another.app"); res["error"] != "InvalidAudienceError" {
		t.Errorf("for another audience: %v", res)
	}
	parts := strings.Split(token, ".")
	forged := []byte(parts[1])
	forged[5] ^= 0x01
	if res := verify(parts[0]+"."+string(forged)+"."+parts[2], base); res["error"] == "" {
		t.Errorf("a forged assertion verifies: %v", res)
	}
}

// TestDebugWarningForTokenPlaceholders: without easy_auth_headers or
// identity_assertion, a site that passes a token upstream in a header of
// its own (not Authorization, which Caddy redacts) gets the debug-logging
// warning at start, naming the handler and the placeholder.
func TestDebugWarningForTokenPlaceholders(t *testing.T) {
	dir := t.TempDir()
	serverLog := filepath.Join(dir, "caddy.log")
	base := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	globals := strings.Replace(testcaddy.Globals(dir), "level ERROR", fmt.Sprintf("level DEBUG\n\t\toutput file %q", serverLog), 1)
	testcaddy.Start(t, globals+fmt.Sprintf(`
%[1]s {
	b2c_auth {
		authority http://127.0.0.1:9/contoso.onmicrosoft.com
		policy B2C_1_susi
		client_id %[2]s
	}
	reverse_proxy 127.0.0.1:9 {
		header_up X-Token {http.auth.b2c.access_token}
	}
}
`, base, clientID))
	testcaddy.WaitForLog(t, serverLog, "debug logging prints the headers that reverse_proxy sends upstream, and reverse_proxy puts {http.auth.b2c.access_token} in a request")
}
