package b2cauth_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/oauth2-proxy/mockoidc"

	"github.com/caddy-b2c/caddy-b2c/internal/testcaddy"
)

const (
	clientID     = "9c2f4a1e-0b3d-4c5e-8f7a-6b5c4d3e2f1a"
	cookieSecret = "q0F1c3Rvbi1ub3QtYS1yZWFsLXNlY3JldC0zMmJ5dGU="
)

// site is a Caddy running b2c_emulator on 127.0.0.1 and a site protected by
// b2c_auth on localhost: two sites, as with real B2C.
type site struct {
	t       *testing.T
	idp     string // http://127.0.0.1:port
	base    string // http://localhost:port
	storage string
	config  string
	b       *testcaddy.Browser
}

// authLines are the b2c_auth options every test site uses.
func (s *site) authLines() string {
	return fmt.Sprintf(`authority %s/contoso.onmicrosoft.com
		policy B2C_1_susi
		password_reset_policy B2C_1_reset
		profile_edit_policy B2C_1_edit
		client_id %s`, s.idp, clientID)
}

// newSite starts Caddy with body as the protected site's block; in body,
// AUTH stands for authLines.
func newSite(t *testing.T, body string) *site {
	s := &site{t: t, storage: t.TempDir(), b: testcaddy.NewBrowser(t)}
	s.idp = fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	s.base = fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	s.config = s.caddyfile(s.base, body)
	testcaddy.Start(t, s.config)
	return s
}

func (s *site) caddyfile(siteAddr, body string) string {
	return testcaddy.Globals(s.storage) + fmt.Sprintf(`
%s {
	b2c_emulator {
		client %s {
			redirect_uri %[3]s/.auth/login/b2c/callback
		}
		user ada@contoso.example Passw0rd! {
			name "Ada Lovelace"
			given_name Ada
			family_name Lovelace
			claim extension_Role admin
		}
		user bob@contoso.example Passw0rd! {
			name "Bob Builder"
		}
	}
}
%s {
%s
}
`, s.idp, clientID, s.base, siteAddr, strings.ReplaceAll(body, "AUTH", s.authLines()))
}

const identityBody = `	b2c_auth {
		AUTH
	}
	respond "id={http.auth.user.id} name={http.auth.user.name} email={http.auth.user.email} policy={http.auth.user.policy} role={http.auth.user.extension_Role}"`

// signIn goes to path as a browser, signs in on the emulator's page and
// returns the page it lands on.
func (s *site) signIn(path, email string) *testcaddy.Response {
	s.t.Helper()
	page := s.b.Follow(s.base + path)
	if !strings.Contains(page.Body, `id="localAccountForm"`) {
		s.t.Fatalf("%s did not lead to the sign-in page: %d\n%s", path, page.StatusCode, page.Body)
	}
	return s.b.FollowResponse(s.b.Submit(page, map[string]string{"email": email, "password": "Passw0rd!"}), page.Request.URL.String())
}

func TestSignInShowsIdentityThenSignOut(t *testing.T) {
	accessLog := filepath.Join(t.TempDir(), "access.log")
	s := newSite(t, identityBody+fmt.Sprintf("\n\tlog {\n\t\toutput file %q\n\t}", accessLog))
	landed := s.signIn("/", "ada@contoso.example")
	// Caddy's access log names the user.
	logged, err := os.ReadFile(accessLog)
	if err != nil || !strings.Contains(string(logged), `"user_id":"`+strings.Split(strings.TrimPrefix(landed.Body, "id="), " ")[0]+`"`) {
		t.Errorf("access log without user_id: %v\n%s", err, logged)
	}
	if landed.StatusCode != 200 || !strings.Contains(landed.Body, "name=Ada Lovelace email=ada@contoso.example policy=B2C_1_susi role=admin") {
		t.Fatalf("after sign-in: %d %q", landed.StatusCode, landed.Body)
	}
	if strings.Contains(landed.Body, "id= ") {
		t.Errorf("no user id placeholder: %q", landed.Body)
	}
	u, _ := url.Parse(s.base)
	var session *http.Cookie
	for _, c := range s.b.Jar.Cookies(u) {
		if c.Name == "b2c_session" {
			session = c
		}
		if strings.HasPrefix(c.Name, "b2c_flow_") {
			t.Errorf("flow cookie %s left behind", c.Name)
		}
	}
	if session == nil {
		t.Fatal("no session cookie")
	}

	// Sign out: through B2C's end_session, back to /, which needs sign-in again.
	out := s.b.Get(s.base + "/.auth/logout")
	action, fields := testcaddy.Form(t, out.Body)
	if action != s.idp+"/contoso.onmicrosoft.com/b2c_1_susi/oauth2/v2.0/logout" || fields.Get("id_token_hint") == "" {
		t.Fatalf("logout goes to %q with %v", action, fields)
	}
	page := s.b.FollowResponse(out, s.base+"/.auth/logout")
	if !strings.Contains(page.Body, `id="localAccountForm"`) {
		t.Errorf("after sign-out, / should lead to the sign-in form again: %d", page.StatusCode)
	}
}

func TestAPIRequestsGet401NotRedirect(t *testing.T) {
	s := newSite(t, identityBody)
	for name, set := range map[string]func(*http.Request){
		"json": func(r *http.Request) { r.Header.Set("Accept", "application/json") },
		"xhr": func(r *http.Request) {
			r.Header.Set("Accept", "text/html")
			r.Header.Set("X-Requested-With", "XMLHttpRequest")
		},
		"fetch":     func(r *http.Request) { r.Header.Set("Accept", "text/html"); r.Header.Set("Sec-Fetch-Mode", "cors") },
		"no accept": func(r *http.Request) {},
	} {
		req, _ := http.NewRequest(http.MethodGet, s.base+"/api/x", nil)
		set(req)
		resp, err := s.b.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: %d %q, want 401 with WWW-Authenticate", name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	resp, err := http.Post(s.base+"/form", "application/x-www-form-urlencoded", strings.NewReader("a=b"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST: %d, want 401", resp.StatusCode)
	}
}

func TestForgotPasswordStartsResetPolicy(t *testing.T) {
	s := newSite(t, identityBody)
	page := s.b.Follow(s.base + "/somewhere?x=1")
	reset := s.b.Follow(testcaddy.Link(t, page, "forgotPassword"))
	if !strings.Contains(reset.Body, `data-view="reset"`) {
		t.Fatalf("AADB2C90118 did not start the reset policy:\n%s", reset.Body)
	}
	landed := s.b.FollowResponse(s.b.SubmitVerified(reset, "ada@contoso.example", map[string]string{"password": "N3wPassw0rd", "password_confirm": "N3wPassw0rd"}), "")
	// The reset flow's token has only oid: the session comes from the
	// sign-in that follows it, silently, with every claim.
	if !strings.Contains(landed.Body, "name=Ada Lovelace email=ada@contoso.example policy=B2C_1_susi role=admin") || landed.Request.URL.RequestURI() != "/somewhere?x=1" {
		t.Errorf("after reset: %s %q", landed.Request.URL, landed.Body)
	}
}

func TestCancelReturnsWhereTheUserStarted(t *testing.T) {
	s := newSite(t, identityBody)
	s.signIn("/", "ada@contoso.example")
	edit := s.b.Follow(s.base + "/.auth/login/profile?post_login_redirect_uri=/mine")
	if !strings.Contains(edit.Body, `data-view="edit"`) {
		t.Fatalf("profile edit page not shown:\n%s", edit.Body)
	}
	back := s.b.Follow(testcaddy.Link(t, edit, "cancel"))
	if back.StatusCode != 200 || back.Request.URL.Path != "/mine" || !strings.Contains(back.Body, "name=Ada Lovelace") {
		t.Errorf("cancel: %d at %s %q", back.StatusCode, back.Request.URL, back.Body)
	}
	// Editing for real changes the name the site sees.
	edit = s.b.Follow(s.base + "/.auth/login/profile")
	done := s.b.FollowResponse(s.b.Submit(edit, map[string]string{"name": "Countess of Lovelace"}), "")
	if !strings.Contains(done.Body, "name=Countess of Lovelace") || !strings.Contains(done.Body, "policy=B2C_1_edit") {
		t.Errorf("after profile edit: %q", done.Body)
	}
}

func TestTwoTabsSignInAtOnce(t *testing.T) {
	s := newSite(t, identityBody)
	tab1 := s.b.Follow(s.base + "/one")
	tab2 := s.b.Follow(s.base + "/two")
	done2 := s.b.FollowResponse(s.b.Submit(tab2, map[string]string{"email": "ada@contoso.example", "password": "Passw0rd!"}), "")
	done1 := s.b.FollowResponse(s.b.Submit(tab1, map[string]string{"email": "ada@contoso.example", "password": "Passw0rd!"}), "")
	if done1.Request.URL.Path != "/one" || done2.Request.URL.Path != "/two" || !strings.Contains(done1.Body, "name=Ada") || !strings.Contains(done2.Body, "name=Ada") {
		t.Errorf("two tabs: %s %q / %s %q", done1.Request.URL, done1.Body, done2.Request.URL, done2.Body)
	}
}

func TestFormPost(t *testing.T) {
	s := newSite(t, strings.Replace(identityBody, "AUTH", "AUTH\n\t\tresponse_mode form_post", 1))
	landed := s.signIn("/fp", "bob@contoso.example")
	if landed.Request.URL.Path != "/fp" || !strings.Contains(landed.Body, "name=Bob Builder") {
		t.Errorf("form_post sign-in: %s %q", landed.Request.URL, landed.Body)
	}
}

func TestSessionSurvivesRestart(t *testing.T) {
	s := newSite(t, identityBody)
	s.signIn("/", "ada@contoso.example")
	// Stop Caddy and start it again with the same storage: the cookie key is
	// kept there, so the session still opens.
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	testcaddy.Start(t, s.config)
	page := s.b.Get(s.base + "/")
	if page.StatusCode != 200 || !strings.Contains(page.Body, "name=Ada Lovelace") {
		t.Errorf("after restart: %d %q", page.StatusCode, page.Body)
	}
}

// TestMain lets this test binary also run as a second Caddy process: with
// B2C_TEST_CADDYFILE set, it loads that Caddyfile, says "ready" and serves
// until its standard input closes.
func TestMain(m *testing.M) {
	if path := os.Getenv("B2C_TEST_CADDYFILE"); path != "" {
		data, err := os.ReadFile(path)
		var cfg []byte
		if err == nil {
			cfg, _, err = caddyconfig.GetAdapter("caddyfile").Adapt(data, nil)
		}
		if err == nil {
			err = caddy.Load(cfg, true)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("ready")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		_ = caddy.Stop()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestTwoProcessesShareSessionsThroughStorage(t *testing.T) {
	s := newSite(t, identityBody)
	s.signIn("/", "ada@contoso.example")

	// A second Caddy process, another port, the same storage and no
	// cookie_secret: it must open the first one's session.
	other := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	body := strings.ReplaceAll(identityBody, "AUTH", s.authLines()+"\n\t\trevocation_sync 1s")
	startOtherCaddy(t, testcaddy.Globals(s.storage)+fmt.Sprintf("%s {\n%s\n}\n", other, body))
	// Cookies are per host, not per port: the browser sends the session.
	page := s.b.Get(other + "/")
	if page.StatusCode != 200 || !strings.Contains(page.Body, "name=Ada Lovelace") {
		t.Errorf("second process: %d %q", page.StatusCode, page.Body)
	}

	// Sign out on the first: a copy of the cookie is refused by the second
	// within its revocation_sync.
	replay := s.b.Copy(s.base)
	s.b.Follow(s.base + "/.auth/logout")
	if !refusedWithin(replay, other+"/", 5*time.Second) {
		t.Error("the second process still opens a session signed out on the first")
	}
}

// startOtherCaddy runs a Caddyfile in a second Caddy process (this test
// binary, see TestMain) until the test ends.
func startOtherCaddy(t *testing.T, caddyfile string) (stop func()) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "B2C_TEST_CADDYFILE="+path)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() { once.Do(func() { stdin.Close(); _ = cmd.Wait() }) }
	t.Cleanup(stop)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("second Caddy did not start: %q %v", line, err)
	}
	return stop
}

// refusedWithin tells whether a browser's session to u stops opening (u
// redirects to sign in) before the time is up.
func refusedWithin(b *testcaddy.Browser, u string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if b.Get(u).StatusCode == http.StatusFound {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
}

// TestIssuerModeWithAnotherProvider signs in, in issuer mode, against
// mockoidc: an OpenID provider written by someone else, so that our plugin
// and our emulator cannot agree on a mistake here.
func TestIssuerModeWithAnotherProvider(t *testing.T) {
	m, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("MOCKOIDC_SECRET", m.ClientSecret)
	t.Cleanup(func() { _ = m.Shutdown() })
	base := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	testcaddy.Start(t, testcaddy.Globals(t.TempDir())+fmt.Sprintf(`
%s {
	b2c_auth {
		issuer %s
		client_id %s
		client_secret {env.MOCKOIDC_SECRET}
	}
	respond "id={http.auth.user.id} email={http.auth.user.email}"
}
`, base, m.Issuer(), m.ClientID))
	b := testcaddy.NewBrowser(t)
	page := b.Follow(base + "/x")
	if page.StatusCode != 200 || page.Body != "id=1234567890 email=jane.doe@example.com" || page.Request.URL.Path != "/x" {
		t.Errorf("issuer mode: %d %s %q", page.StatusCode, page.Request.URL, page.Body)
	}
}

// echoUpstream is an app behind reverse_proxy that answers with the
// request headers it received, as JSON.
func echoUpstream(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(r.Header)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func upstreamHeaders(t *testing.T, r *testcaddy.Response) http.Header {
	t.Helper()
	var h http.Header
	if r.StatusCode != 200 || json.Unmarshal([]byte(r.Body), &h) != nil {
		t.Fatalf("upstream not reached: %d %s", r.StatusCode, r.Body)
	}
	return h
}

// TestIdentityReachesUpstream: a browser session and an access token both
// reach the app behind reverse_proxy with the user's identity; spoofed
// identity headers never do; /admin/* admits only admins, with one sign-in.
func TestIdentityReachesUpstream(t *testing.T) {
	up := echoUpstream(t)
	s := &site{t: t, storage: t.TempDir(), b: testcaddy.NewBrowser(t)}
	s.idp = fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	s.base = fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	open := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	s.config = s.caddyfile(s.base, fmt.Sprintf(`	b2c_auth {
		AUTH
		scopes openid offline_access %[1]s
		easy_auth_headers
	}
	b2c_auth /admin/* {
		AUTH
		allow extension_Role admin
	}
	request_header X-User-Email {http.auth.user.email}
	reverse_proxy %[2]s`, clientID, up)) + fmt.Sprintf(`
%s {
	b2c_auth {
		%s
		unauthenticated allow
	}
	reverse_proxy %s
}
`, open, s.authLines(), up)
	testcaddy.Start(t, s.config)

	spoof := func(req *http.Request) {
		req.Header.Set("X-MS-CLIENT-PRINCIPAL-ID", "attacker")
		req.Header.Set("X-MS-CLIENT-PRINCIPAL", "YXR0YWNrZXI=")
		req.Header.Set("X-MS-TOKEN-AAD-ID-TOKEN", "forged")
	}
	get := func(b *testcaddy.Browser, u string, set func(*http.Request)) *testcaddy.Response {
		req, _ := http.NewRequest("GET", u, nil)
		req.Header.Set("Accept", "text/html")
		set(req)
		resp, err := b.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return &testcaddy.Response{Response: resp, Body: string(body)}
	}

	// Signed out, anonymous allowed: spoofed headers are stripped.
	h := upstreamHeaders(t, get(testcaddy.NewBrowser(t), open+"/", spoof))
	for k := range h {
		if strings.HasPrefix(strings.ToLower(k), "x-ms-") {
			t.Errorf("signed out: %s reached the upstream", k)
		}
	}

	// A browser session, with spoofed headers: the real identity wins.
	s.signIn("/", "ada@contoso.example")
	h = upstreamHeaders(t, get(s.b, s.base+"/app", spoof))
	adaID := h.Get("X-Ms-Client-Principal-Id")
	if adaID == "" || adaID == "attacker" || h.Get("X-User-Email") != "ada@contoso.example" || h.Get("X-Ms-Token-Aad-Id-Token") == "" || h.Get("X-Ms-Client-Principal-Name") != "ada@contoso.example" {
		t.Errorf("session identity upstream: %v", h)
	}
	// The admin part admits Ada.
	if r := get(s.b, s.base+"/admin/panel", func(*http.Request) {}); r.StatusCode != 200 {
		t.Errorf("admin /admin/panel: %d", r.StatusCode)
	}

	// An access token from the session (the client ID was asked as a scope).
	me := s.b.Get(s.base + "/.auth/me")
	var who []struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal([]byte(me.Body), &who); err != nil || len(who) != 1 || who[0].AccessToken == "" {
		t.Fatalf("/.auth/me: %s", me.Body)
	}
	h = upstreamHeaders(t, get(testcaddy.NewBrowser(t), s.base+"/api", func(r *http.Request) {
		spoof(r)
		r.Header.Set("Accept", "application/json")
		r.Header.Set("Authorization", "Bearer "+who[0].AccessToken)
	}))
	if h.Get("X-Ms-Client-Principal-Id") != adaID {
		t.Errorf("bearer identity upstream: %v", h)
	}

	// Bob is signed in but not an admin: / works, /admin/* is refused.
	s.b = testcaddy.NewBrowser(t)
	s.signIn("/", "bob@contoso.example")
	if r := get(s.b, s.base+"/page", func(*http.Request) {}); r.StatusCode != 200 {
		t.Errorf("bob /page: %d", r.StatusCode)
	}
	if r := get(s.b, s.base+"/admin/panel", func(*http.Request) {}); r.StatusCode != http.StatusForbidden {
		t.Errorf("bob /admin/panel: %d, want 403", r.StatusCode)
	}
}

func TestRefreshRenewsTheSession(t *testing.T) {
	s := newSite(t, identityBody)
	if r := s.b.Get(s.base + "/.auth/refresh"); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("refresh signed out: %d", r.StatusCode)
	}
	s.signIn("/", "ada@contoso.example")
	u, _ := url.Parse(s.base)
	before := s.b.Jar.Cookies(u)
	r := s.b.Get(s.base + "/.auth/refresh")
	if r.StatusCode != http.StatusNoContent {
		t.Fatalf("refresh: %d %s", r.StatusCode, r.Body)
	}
	after := s.b.Jar.Cookies(u)
	if len(after) == 0 || len(before) == 0 || after[0].Value == before[0].Value {
		t.Error("refresh did not renew the session cookie")
	}
	if page := s.b.Get(s.base + "/"); !strings.Contains(page.Body, "name=Ada Lovelace") {
		t.Errorf("after refresh: %d %q", page.StatusCode, page.Body)
	}
}

// TestProviderDownAtStartThenBack: Caddy starts while the provider is
// unreachable, answers 503 with Retry-After meanwhile, and signs users in
// once it is back, by itself.
func TestProviderDownAtStartThenBack(t *testing.T) {
	s := &site{t: t, storage: t.TempDir(), b: testcaddy.NewBrowser(t)}
	s.idp = fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	s.base = fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	target, _ := url.Parse(s.idp)
	var up atomic.Bool
	proxy := httputil.NewSingleHostReverseProxy(target)
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			http.Error(w, "provider down", http.StatusBadGateway)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(gate.Close)
	// b2c_auth reaches the emulator only through the gate.
	body := strings.Replace(identityBody, "AUTH", strings.Replace(s.authLines(), s.idp, gate.URL, 1), 1)
	s.config = s.caddyfile(s.base, body)
	testcaddy.Start(t, s.config)

	r := s.b.Get(s.base + "/")
	if r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("provider down: %d, want 503", r.StatusCode)
	}
	retry, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || retry < 1 || retry > 60 {
		t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
	}
	up.Store(true)
	// A client that honours Retry-After gets in.
	<-time.After(time.Duration(retry) * time.Second)
	if page := s.signIn("/", "ada@contoso.example"); !strings.Contains(page.Body, "name=Ada Lovelace") {
		t.Errorf("after the provider came back: %d %q", page.StatusCode, page.Body)
	}
}

// TestCORSPreflightThroughCaddy runs examples/spa-api-cors.Caddyfile, with
// the emulator for B2C: the browser's preflight gets the app's CORS answer
// without credentials (the example opts in with cors_preflight pass), the
// real request without a token 401, and with the emulator's access token
// for the API's scope it reaches the upstream. The same site without the
// option answers a preflight 401 and never runs respond.
func TestCORSPreflightThroughCaddy(t *testing.T) {
	example, err := os.ReadFile("../examples/spa-api-cors.Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	idp := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	base := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	spa := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	closed := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	up := echoUpstream(t)
	site := strings.NewReplacer(
		"api.example.com {", base+" {",
		"tenant {env.B2C_TENANT}", "authority "+idp+"/contoso.onmicrosoft.com",
		"{env.B2C_CLIENT_ID}", clientID,
		"{env.B2C_API_CLIENT_ID}", "7b1c0a52-3f4e-4d6a-9b8c-2e1f0a3d4c5b",
		"localhost:5000", strings.TrimPrefix(up, "http://"),
	).Replace(string(example))
	// The emulator, with the API registered, and a site that signs users in
	// and asks for the API's scope: where the SPA's tokens come from.
	testcaddy.Start(t, testcaddy.Globals(t.TempDir())+fmt.Sprintf(`
%[1]s {
	b2c_emulator {
		client %[2]s {
			redirect_uri %[3]s/.auth/login/b2c/callback
		}
		api https://contoso.onmicrosoft.com/tasks 7b1c0a52-3f4e-4d6a-9b8c-2e1f0a3d4c5b {
			scopes Tasks.Read
		}
	}
}
%[3]s {
	b2c_auth {
		authority %[1]s/contoso.onmicrosoft.com
		policy B2C_1_susi
		client_id %[2]s
		scopes openid offline_access https://contoso.onmicrosoft.com/tasks/Tasks.Read
	}
	respond "signed in"
}
`, idp, clientID, spa)+site+strings.Replace(strings.Replace(site, base+" {", closed+" {", 1), "\t\tcors_preflight pass\n", "", 1))

	if r := preflightTo(t, closed+"/items"); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("a preflight where the site did not opt in: %d, want 401 (respond @preflight would answer 204)", r.StatusCode)
	}

	if resp := preflightTo(t, base+"/items"); resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://spa.example.com" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight: %d %v", resp.StatusCode, resp.Header)
	}

	api := func(auth string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, base+"/items", nil)
		req.Header.Set("Origin", "https://spa.example.com")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if r := api(""); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("the real request without a token: %d", r.StatusCode)
	}

	// A user signs in through the SPA's registration asking for the API's
	// scope; the access token opens the API, the ID token does not.
	b := testcaddy.NewBrowser(t)
	signInAs(t, b, spa+"/", "ada@contoso.example")
	token, idToken := sessionTokens(t, b, spa)
	if r := api("Bearer " + token); r.StatusCode != 200 || r.Header.Get("Access-Control-Allow-Origin") != "https://spa.example.com" {
		t.Errorf("with the access token: %d", r.StatusCode)
	}
	if r := api("Bearer " + idToken); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("with the ID token: %d", r.StatusCode)
	}
}

// preflightTo sends a browser's CORS preflight for GET url.
func preflightTo(t *testing.T, url string) *http.Response {
	t.Helper()
	preflight, _ := http.NewRequest(http.MethodOptions, url, nil)
	preflight.Header.Set("Origin", "https://spa.example.com")
	preflight.Header.Set("Access-Control-Request-Method", "GET")
	preflight.Header.Set("Access-Control-Request-Headers", "authorization")
	resp, err := http.DefaultClient.Do(preflight)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// TestRedirectURIThroughTwoProxies: a real Caddy with trusted_proxies and
// trusted_proxies_strict behind a CDN and a load balancer, each appending
// to X-Forwarded-For, -Host and -Proto, and a client that forges a
// trusted-looking hop of its own. The redirect URI names what the CDN
// received. (Caddy clears the server's trusted_proxies configuration once
// loaded: the plugin read it there, found nothing, and took the load
// balancer's values.)
func TestRedirectURIThroughTwoProxies(t *testing.T) {
	idp := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	site := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	globals := strings.Replace(testcaddy.Globals(t.TempDir()), "\tadmin off\n", "\tadmin off\n\tservers {\n\t\ttrusted_proxies static 127.0.0.0/8\n\t\ttrusted_proxies_strict\n\t}\n", 1)
	testcaddy.Start(t, globals+fmt.Sprintf(`
%[1]s {
	b2c_emulator
}
%[2]s {
	b2c_auth {
		authority %[1]s/contoso.onmicrosoft.com
		policy B2C_1_susi
		client_id %[3]s
	}
	respond "signed in"
}
`, idp, site, clientID))

	// A proxy that appends what it received, as a CDN or load balancer
	// does; client is the address it saw the request come from.
	proxy := func(target, client, proto string) *httptest.Server {
		u, _ := url.Parse(target)
		srv := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			for name, v := range map[string]string{"X-Forwarded-For": client, "X-Forwarded-Host": pr.In.Host, "X-Forwarded-Proto": proto} {
				if prior := pr.In.Header.Get(name); prior != "" {
					v = prior + ", " + v
				}
				pr.Out.Header.Set(name, v)
			}
		}})
		t.Cleanup(srv.Close)
		return srv
	}
	lb := proxy(site, "127.0.0.1", "http")       // the load balancer saw the CDN's node
	cdn := proxy(lb.URL, "203.0.113.9", "https") // the CDN saw the client's public address, over TLS
	req, _ := http.NewRequest(http.MethodGet, cdn.URL+"/.auth/login", nil)
	req.Host = "www.example.com"
	req.Header.Set("X-Forwarded-For", "127.0.0.9") // the client's forged "trusted" hop
	req.Header.Set("X-Forwarded-Host", "evil.example")
	req.Header.Set("X-Forwarded-Proto", "http")
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if got := loc.Query().Get("redirect_uri"); got != "https://www.example.com/.auth/login/b2c/callback" {
		t.Errorf("redirect_uri through CDN and load balancer: %q (status %d)", got, resp.StatusCode)
	}
}
