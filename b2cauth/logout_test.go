package b2cauth

import (
	"context"
	"encoding/json"
	"errors"
	"html"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/signouts"
)

// opens tells whether the cookies open a session: the request reaches the
// next handler instead of being sent to sign in.
func opens(h *Handler, cookies []*http.Cookie) bool {
	return serve(h, withCookies(navigation("GET", "/page"), cookies)).reachedNext
}

// endSession is where a sign-out sends the browser: the provider's
// end_session URL that its self-submitting GET form builds.
func endSession(t *testing.T, res result) *url.URL {
	t.Helper()
	body := res.Body.String()
	m := regexp.MustCompile(`<form method="get" action="([^"]*)"`).FindStringSubmatch(body)
	if res.Code != http.StatusOK || m == nil {
		t.Fatalf("sign-out page: %d\n%s", res.Code, body)
	}
	u, _ := url.Parse(html.UnescapeString(m[1]))
	q := url.Values{}
	for _, in := range regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`).FindAllStringSubmatch(body, -1) {
		q.Add(html.UnescapeString(in[1]), html.UnescapeString(in[2]))
	}
	u.RawQuery = q.Encode()
	return u
}

func logoutWith(h *Handler, query string, cookies []*http.Cookie) result {
	return serve(h, withCookies(navigation("GET", "/.auth/logout"+query), cookies))
}

func TestSignOutRevokesACopiedCookie(t *testing.T) {
	h, p, s := setup(t, nil)
	cookies := signedIn(t, h, p, s, nil)
	if !opens(h, cookies) {
		t.Fatal("the fresh session does not open")
	}
	res := logoutWith(h, "?post_logout_redirect_uri=/bye", cookies)
	loc := endSession(t, res)
	q := loc.Query()
	if loc.Path != "/contoso.onmicrosoft.com/oauth2/v2.0/logout" || q.Get("p") != "B2C_1_susi" {
		t.Fatalf("logout: %d %s", res.Code, loc)
	}
	// One registered redirect URI: sign-out comes back through the callback.
	if q.Get("post_logout_redirect_uri") != "http://example.com"+defaultRedirectPath || q.Get("client_id") != testClient ||
		q.Get("id_token_hint") == "" || !statePattern.MatchString(q.Get("state")) {
		t.Errorf("end_session parameters: %v", q)
	}
	// The attack: a copy of the cookie (another tab, a proxy, a thief) is
	// replayed after sign-out. It must not open the site.
	if opens(h, cookies) {
		t.Error("the session cookie still opens the site after sign-out")
	}
	// The provider returns to the callback with the state; the browser goes
	// on to post_logout_redirect_uri.
	var logoutCookie *http.Cookie
	for _, c := range res.Result().Cookies() {
		if strings.HasPrefix(c.Name, logoutCookiePrefix) && c.MaxAge > 0 {
			logoutCookie = c
		}
	}
	back := serve(h, callbackRequest(q.Get("state"), logoutCookie, nil))
	if back.Code != http.StatusFound || back.Header().Get("Location") != "/bye" {
		t.Errorf("return from end_session: %d %q", back.Code, back.Header().Get("Location"))
	}
	// Without its cookie (another browser), the return is a plain page.
	if other := serve(h, callbackRequest(q.Get("state"), nil, nil)); other.Code != http.StatusOK || !strings.Contains(other.Body.String(), "signed out") {
		t.Errorf("return without its cookie: %d", other.Code)
	}
}

func TestSignOutEverywhere(t *testing.T) {
	h, p, s := setup(t, nil)
	laptop := signedIn(t, h, p, s, nil)
	phone := signedIn(t, h, p, s, nil)
	bob := signedIn(t, h, p, s, func(c map[string]any) { c["oid"], c["sub"] = "user-2", "user-2" })
	token := s.sign(t, accessClaims(p)) // an API token of the same user, issued before
	if res := serve(h, apiRequest("Bearer "+token)); !res.reachedNext {
		t.Fatalf("the bearer token does not open the API: %d", res.Code)
	}

	// The attacks: another site, a sibling subdomain (same-site), or a link
	// in a browser that sends no Fetch metadata may not sign the user out
	// of every device. The user gets a page to confirm on instead.
	for name, req := range map[string]*http.Request{
		"cross-site":     withFetchSite(navigation("GET", "/.auth/logout?everywhere=1"), "cross-site"),
		"same-site":      withFetchSite(navigation("GET", "/.auth/logout?everywhere=1"), "same-site"),
		"typed URL":      withFetchSite(navigation("GET", "/.auth/logout?everywhere=1"), "none"),
		"no metadata":    navigation("GET", "/.auth/logout?everywhere=1"),
		"foreign origin": withOrigin(navigation("POST", "/.auth/logout?everywhere=1"), "http://evil.example"),
	} {
		res := serve(h, withCookies(req, phone))
		if res.Code != http.StatusForbidden || !strings.Contains(res.Body.String(), `<form method="post"`) {
			t.Errorf("%s: %d, want 403 with a confirmation form", name, res.Code)
		}
		if !opens(h, laptop) || !opens(h, phone) {
			t.Fatalf("%s signed the user out", name)
		}
	}

	// The confirmation form posts from the site's own page.
	res := serve(h, withCookies(withOrigin(navigation("POST", "/.auth/logout?everywhere=1"), "http://example.com"), phone))
	if res.Code != http.StatusOK {
		t.Fatalf("confirmed sign-out everywhere: %d", res.Code)
	}
	if opens(h, laptop) || opens(h, phone) {
		t.Error("the user's other session survives sign-out everywhere")
	}
	if !opens(h, bob) {
		t.Error("another user's session was ended")
	}
	// "Everywhere" means the API too: the user's bearer tokens issued before
	// it are refused; one issued after it is accepted.
	if res := serve(h, apiRequest("Bearer "+token)); res.reachedNext || res.Code != http.StatusUnauthorized {
		t.Errorf("a bearer token issued before sign-out everywhere: %d", res.Code)
	}
	later := accessClaims(p)
	later["iat"] = time.Now().Add(2 * time.Second).Unix()
	if res := serve(h, apiRequest("Bearer "+s.sign(t, later))); !res.reachedNext {
		t.Errorf("a bearer token issued after sign-out everywhere: %d", res.Code)
	}
	if again := signedIn(t, h, p, s, nil); !opens(h, again) {
		t.Error("a sign-in after sign-out everywhere does not open")
	}

	// From a page of the site (Sec-Fetch-Site: same-origin), a link works.
	again := signedIn(t, h, p, s, nil)
	if res := serve(h, withCookies(withFetchSite(navigation("GET", "/.auth/logout?everywhere=1"), "same-origin"), again)); res.Code != http.StatusOK || opens(h, again) {
		t.Errorf("same-origin sign-out everywhere: %d", res.Code)
	}
}

func withFetchSite(req *http.Request, site string) *http.Request {
	req.Header.Set("Sec-Fetch-Site", site)
	return req
}

func withOrigin(req *http.Request, origin string) *http.Request {
	req.Header.Set("Origin", origin)
	return req
}

// unnamedStorage is a file storage without String, so that two handlers on
// the same directory get two revocation lists, as two processes would.
type unnamedStorage struct{ certmagic.Storage }

func TestRevocationsReachAnotherInstance(t *testing.T) {
	dir := t.TempDir()
	h1, p, s := setup(t, func(h *Handler) { h.storage = unnamedStorage{&certmagic.FileStorage{Path: dir}} })
	h2 := newTestHandler(t, p, func(h *Handler) { h.storage = unnamedStorage{&certmagic.FileStorage{Path: dir}} })
	if h1.signouts == h2.signouts {
		t.Fatal("the two instances share a revocation list")
	}
	cookies := signedIn(t, h1, p, s, nil)
	if !opens(h2, cookies) {
		t.Fatal("the second instance does not open the session")
	}
	logoutWith(h1, "", cookies)
	h2.signouts.Sync(context.Background()) // what the next revocation_sync does
	if opens(h2, cookies) {
		t.Error("the second instance still opens a session signed out on the first")
	}

	// Entries expire with the sessions they cover, and are deleted.
	keys := storedKeys(t, h1.storage, "b2c_auth/signouts")
	if len(keys) != 1 {
		t.Fatalf("revocations in storage: %v", keys)
	}
	var e signouts.Entry
	data, _ := h1.storage.Load(context.Background(), keys[0])
	_ = json.Unmarshal(data, &e)
	e.Expires = time.Now().Add(-time.Second).Unix()
	data, _ = json.Marshal(e)
	_ = h1.storage.Store(context.Background(), keys[0], data)
	h3 := newTestHandler(t, p, func(h *Handler) { h.storage = unnamedStorage{&certmagic.FileStorage{Path: dir}} })
	h3.signouts.Sync(context.Background())
	if keys := storedKeys(t, h1.storage, "b2c_auth/signouts"); len(keys) != 0 {
		t.Errorf("an expired revocation stays in storage: %v", keys)
	}

	// A damaged or foreign entry revokes nothing and breaks nothing.
	other := signedIn(t, h1, p, s, nil)
	bucket := filepath.Join(dir, "b2c_auth", "signouts", strconv.FormatInt(time.Now().Unix()/60, 10))
	_ = os.MkdirAll(bucket, 0o700)
	_ = os.WriteFile(filepath.Join(bucket, "session_garbage"), []byte("{not json"), 0o600)
	h3.signouts.Sync(context.Background())
	if !opens(h3, other) {
		t.Error("a damaged entry revoked a session")
	}
}

// storedKeys lists the files under a storage directory.
func storedKeys(t testing.TB, storage certmagic.Storage, dir string) []string {
	t.Helper()
	keys, err := storage.List(context.Background(), dir, true)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var files []string
	for _, k := range keys {
		if info, err := storage.Stat(context.Background(), k); err == nil && info.IsTerminal {
			files = append(files, k)
		}
	}
	return files
}

// tokenReply makes the hostile token endpoint answer with these tokens.
func tokenReply(p *hostile, idToken, refreshToken string) {
	body, _ := json.Marshal(map[string]any{"id_token": idToken, "refresh_token": refreshToken, "token_type": "Bearer"})
	p.set(func(p *hostile) { p.tokenReply, p.tokenCode = string(body), 200 })
}

func TestSignOutRenewsAnExpiredIDTokenForTheHint(t *testing.T) {
	h, p, s := setup(t, nil)
	state, nonce, fc := pendingFlow(t, h, "/")
	tokenReply(p, s.sign(t, goodClaims(p, nonce)), "rt-1")
	res := serve(h, callbackRequest(state, fc, url.Values{"code": {"c"}}))
	cookies := sessionCookies(res)
	// Two hours later the ID token has expired; B2C would refuse it as a
	// hint (AADB2C90208), so the sign-out renews it first.
	h.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	renewed := goodClaims(p, "")
	delete(renewed, "nonce")
	renewed["exp"] = time.Now().Add(3 * time.Hour).Unix()
	fresh := s.sign(t, renewed)
	tokenReply(p, fresh, "rt-2")
	out := logoutWith(h, "", cookies)
	loc := endSession(t, out)
	if hint := loc.Query().Get("id_token_hint"); hint != fresh {
		t.Errorf("id_token_hint is not the renewed token (%d chars)", len(hint))
	}
	// Without a refresh token that works, no expired hint is sent.
	p.set(func(p *hostile) {
		p.tokenReply, p.tokenCode = `{"error":"invalid_grant","error_description":"AADB2C90129: revoked"}`, 400
	})
	h.now = time.Now
	cookies = signedIn(t, h, p, s, nil)
	h.now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	out = logoutWith(h, "?post_logout_redirect_uri=/bye", cookies)
	// Our session ends all the same, and the page says what it could not do.
	body := out.Body.String()
	links := regexp.MustCompile(`<a href="([^"]*)">`).FindAllStringSubmatch(body, -1)
	if out.Code != http.StatusOK || !strings.Contains(body, "You are signed out here") || len(links) != 2 {
		t.Fatalf("sign-out without a renewable ID token: %d\n%s", out.Code, body)
	}
	provider, _ := url.Parse(html.UnescapeString(links[0][1]))
	if !strings.HasSuffix(provider.Path, "/logout") || provider.Query().Has("id_token_hint") || provider.Query().Get("state") == "" || provider.Query().Get("client_id") != testClient {
		t.Errorf("the link to end the provider's session: %s", provider)
	}
	if links[1][1] != "/bye" {
		t.Errorf("continue goes to %q, want /bye", links[1][1])
	}
	cleared := false
	for _, c := range out.Result().Cookies() {
		cleared = cleared || (strings.HasPrefix(c.Name, sessionCookie) && c.MaxAge < 0)
	}
	if !cleared {
		t.Error("the session cookie is not cleared")
	}
}

func TestFrontChannelLogout(t *testing.T) {
	h, p, s := setup(t, nil)
	cookies := signedIn(t, h, p, s, func(c map[string]any) { c["sid"] = "0a1b2c3d-provider-session" })
	other := signedIn(t, h, p, s, func(c map[string]any) { c["sid"] = "another-provider-session" })
	frontChannel := func(method, query string) int {
		return serve(h, navigation(method, frontChannelPath+query)).Code
	}
	// Whatever it is sent, the answer is 200, and bad input revokes nothing.
	for name, query := range map[string]string{
		"no sid":      "",
		"empty sid":   "?sid=",
		"huge sid":    "?sid=" + strings.Repeat("a", 5000),
		"control":     "?sid=a%00b",
		"unknown sid": "?sid=never-signed-in-here",
		"forged iss":  "?sid=0a1b2c3d-provider-session&iss=" + url.QueryEscape("https://evil.example/v2.0/"),
	} {
		if got := frontChannel("GET", query); got != http.StatusOK {
			t.Errorf("%s: %d, want 200", name, got)
		}
	}
	if !opens(h, cookies) || !opens(h, other) {
		t.Fatal("bad front-channel requests revoked a session")
	}
	if keys := storedKeys(t, h.storage, "b2c_auth/signouts"); len(keys) != 0 {
		t.Errorf("bad front-channel requests wrote revocations: %v", keys)
	}
	// A front-channel request that carries a session cookie ends that session.
	third := signedIn(t, h, p, s, nil)
	if res := serve(h, withCookies(navigation("GET", frontChannelPath), third)); res.Code != http.StatusOK || opens(h, third) {
		t.Errorf("front-channel logout with a cookie: %d, session still open: %v", res.Code, opens(h, third))
	}

	// The provider's iframe: cross-site, so no cookie; sid and iss only.
	res := serve(h, navigation("GET", frontChannelPath+"?sid=0a1b2c3d-provider-session&iss="+url.QueryEscape(p.issuer)))
	if res.Code != http.StatusOK || !strings.Contains(res.Header().Get("Cache-Control"), "no-store") {
		t.Fatalf("front-channel logout: %d %q", res.Code, res.Header().Get("Cache-Control"))
	}
	if opens(h, cookies) {
		t.Error("the session survives the provider's front-channel logout")
	}
	if !opens(h, other) {
		t.Error("another provider session was ended")
	}
	// Entra ID sends no iss; the method does not matter.
	if code := frontChannel("POST", "?sid=another-provider-session"); code != http.StatusOK || opens(h, other) {
		t.Errorf("front-channel logout without iss: %d", code)
	}
}

// TestRedirectURIBehindAProxy: the redirect URI names the host and scheme
// the outermost trusted proxy received, counted from what Caddy tells of
// the request (whether the peer is trusted and, under
// trusted_proxies_strict, the client's address), never from a value the
// client chose.
func TestRedirectURIBehindAProxy(t *testing.T) {
	// The server trusts 10.0.0.0/8 (its load balancer and its CDN's nodes),
	// in strict mode: Caddy's client_ip is then the rightmost untrusted
	// X-Forwarded-For address, which each case gives as Caddy computes it.
	strict := &caddyhttp.Server{TrustedProxiesStrict: 1}
	redirectURI := func(h *Handler, srv *caddyhttp.Server, trusted bool, clientIP string, header http.Header) string {
		req := navigation("GET", "/page")
		for k, v := range header {
			req.Header[k] = v
		}
		ctx := context.WithValue(req.Context(), caddyhttp.VarsCtxKey, map[string]any{caddyhttp.TrustedProxyVarKey: trusted, caddyhttp.ClientIPVarKey: clientIP})
		ctx = context.WithValue(ctx, caddyhttp.ServerCtxKey, srv)
		res := serve(h, req.WithContext(ctx))
		loc, _ := url.Parse(res.Header().Get("Location"))
		return loc.Query().Get("redirect_uri")
	}
	forwarded := http.Header{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"www.example.com"}, "X-Forwarded-For": {"198.51.100.7"}}
	h, _, _ := setup(t, nil)
	if got := redirectURI(h, strict, true, "198.51.100.7", forwarded); got != "https://www.example.com"+defaultRedirectPath {
		t.Errorf("from a trusted proxy: %s", got)
	}
	// The attack: a client that is not a trusted proxy forges the headers to
	// have the code sent to its own host.
	if got := redirectURI(h, strict, false, "198.51.100.7", forwarded); got != "http://example.com"+defaultRedirectPath {
		t.Errorf("from an untrusted client: %s", got)
	}
	if got := redirectURI(h, strict, true, "198.51.100.7", http.Header{"X-Forwarded-Host": {"evil.example/path"}}); got != "http://example.com"+defaultRedirectPath {
		t.Errorf("malformed X-Forwarded-Host: %s", got)
	}
	// The attack through a trusted proxy: the client sends its own
	// X-Forwarded-Host (and -Proto) first, the proxy appends what it
	// received. The client's value is never taken.
	prepended := http.Header{
		"X-Forwarded-Proto": {"http, https"},
		"X-Forwarded-Host":  {"evil.example, www.example.com"},
		"X-Forwarded-For":   {"198.51.100.7"},
	}
	if got := redirectURI(h, strict, true, "198.51.100.7", prepended); got != "https://www.example.com"+defaultRedirectPath {
		t.Errorf("a client that prepends its own host: %s", got)
	}
	// A client that also forges X-Forwarded-For with a trusted address, so
	// as to look like one more proxy: Caddy's strict walk stops at the
	// client's own address, right of the forged one.
	forgedChain := http.Header{
		"X-Forwarded-Host": {"evil.example", "www.example.com"},
		"X-Forwarded-For":  {"10.9.9.9", "198.51.100.7"},
	}
	if got := redirectURI(h, strict, true, "198.51.100.7", forgedChain); got != "http://www.example.com"+defaultRedirectPath {
		t.Errorf("a client that forges a trusted hop: %s", got)
	}
	// Two hops: CDN (10.1.0.5) → load balancer (the peer) → Caddy. The CDN
	// received www.example.com from the client and appended it; the load
	// balancer appended the CDN's address and the host it was sent to.
	chain := http.Header{
		"X-Forwarded-Proto": {"http, https, http"},
		"X-Forwarded-Host":  {"evil.example, www.example.com, origin.internal"},
		"X-Forwarded-For":   {"203.0.113.9, 198.51.100.7, 10.1.0.5"},
	}
	if got := redirectURI(h, strict, true, "198.51.100.7", chain); got != "https://www.example.com"+defaultRedirectPath {
		t.Errorf("through CDN and load balancer: %s", got)
	}
	// Without trusted_proxies_strict, Caddy's client_ip is the leftmost
	// address, which the client chooses: only the peer counts.
	if got := redirectURI(h, &caddyhttp.Server{}, true, "203.0.113.9", chain); got != "http://origin.internal"+defaultRedirectPath {
		t.Errorf("two hops without strict mode: %s, want the peer's values", got)
	}
	pinned, _, _ := setup(t, func(h *Handler) { h.PublicURL = "https://login.example.org" })
	if got := redirectURI(pinned, strict, true, "198.51.100.7", forwarded); got != "https://login.example.org"+defaultRedirectPath {
		t.Errorf("with public_url: %s", got)
	}
}

func TestProviderErrorWithoutStateIsShown(t *testing.T) {
	h, _, _ := setup(t, nil)
	// B2C sends AADB2C90006 to another registered redirect URI, without state.
	q := url.Values{"error": {"redirect_uri_mismatch"}, "error_description": {"AADB2C90006: The redirect URI 'http://x/cb' provided in the request is not registered for the client id 'c'.\r\nCorrelation ID: 447ce08a\r\nTimestamp: 2020-04-25 17:09:08Z\r\n<script>"}}
	res := serve(h, navigation("GET", defaultRedirectPath+"?"+q.Encode()))
	body := res.Body.String()
	if res.Code != http.StatusUnauthorized || !strings.Contains(body, "AADB2C90006") || strings.Contains(body, "state mismatch") || strings.Contains(body, "script") || strings.Contains(body, "http://x/cb") {
		t.Errorf("error without state: %d\n%s", res.Code, body)
	}
	if res.reachedNext || res.cookie(sessionCookie) != nil {
		t.Error("an error without state did something more than show itself")
	}
}

// TestPendingSignOutsAreCapped: the attack — a page that loads
// /.auth/logout in a loop set one more 10-minute cookie each time (150
// visits: a 25 KB Cookie header on every request to the host, and a 431).
// Pending sign-outs are capped as pending sign-ins are; the oldest go.
func TestPendingSignOutsAreCapped(t *testing.T) {
	h, _, _ := setup(t, nil)
	jar, first := pendingAfter(h, "/.auth/logout", logoutCookiePrefix, 30)
	if len(jar) != maxPending {
		t.Errorf("%d pending sign-out cookies after 30 visits, want the cap %d", len(jar), maxPending)
	}
	if _, ok := jar[first]; ok {
		t.Error("the oldest pending sign-out was kept")
	}
}
