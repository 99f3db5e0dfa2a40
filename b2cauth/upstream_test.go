package b2cauth

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// signedInWithTokens signs in with an access token that expires in
// expiresIn and a refresh token, and returns the session cookies.
func signedInWithTokens(t *testing.T, h *Handler, p *hostile, s signer, accessToken string, expiresIn time.Duration) []*http.Cookie {
	t.Helper()
	state, nonce, fc := pendingFlow(t, h, "/")
	body, _ := json.Marshal(map[string]any{"id_token": s.sign(t, goodClaims(p, nonce)), "access_token": accessToken, "expires_in": int(expiresIn.Seconds()), "refresh_token": "rt-1"})
	p.set(func(p *hostile) { p.tokenReply, p.tokenCode = string(body), 200 })
	res := serve(h, callbackRequest(state, fc, url.Values{"code": {"c"}}))
	out := sessionCookies(res)
	if len(out) == 0 {
		t.Fatalf("sign-in: %d %s", res.Code, res.Body)
	}
	return out
}

// renewWith makes the hostile token endpoint renew with this access token.
func renewWith(t *testing.T, p *hostile, s signer, accessToken string) {
	claims := goodClaims(p, "")
	delete(claims, "nonce")
	body, _ := json.Marshal(map[string]any{"id_token": s.sign(t, claims), "access_token": accessToken, "expires_in": 3600, "refresh_token": "rt-2"})
	p.set(func(p *hostile) { p.tokenReply, p.tokenCode, p.refreshHits = string(body), 200, 0 })
}

func upstreamToken(res result) string {
	v, _ := res.repl.GetString("http.auth.b2c.access_token")
	return v
}

func TestTokensReachUpstreamAndAreRenewed(t *testing.T) {
	h, p, s := setup(t, func(h *Handler) { h.Scopes = []string{"openid", "offline_access", testClient} })
	fresh := signedInWithTokens(t, h, p, s, "at-fresh", time.Hour)
	res := serve(h, withCookies(navigation("GET", "/page"), fresh))
	if got := upstreamToken(res); got != "at-fresh" || res.cookie(sessionCookie) != nil {
		t.Errorf("a fresh token: upstream got %q, cookie rewritten %v", got, res.cookie(sessionCookie) != nil)
	}
	if exp, _ := res.repl.GetString("http.auth.b2c.access_token_expires"); !strings.HasPrefix(exp, time.Now().Add(time.Hour).UTC().Format("2006-01-02T15")) {
		t.Errorf("{http.auth.b2c.access_token_expires} = %q", exp)
	}

	// Near expiry, the request renews the tokens: upstream sees the new
	// access token, and the response carries the new cookie.
	stale := signedInWithTokens(t, h, p, s, "at-old", 2*time.Minute)
	renewWith(t, p, s, "at-new")
	res = serve(h, withCookies(navigation("GET", "/page"), stale))
	if got := upstreamToken(res); got != "at-new" || res.cookie(sessionCookie) == nil {
		t.Fatalf("near expiry: upstream got %q, new cookie %v", got, res.cookie(sessionCookie) != nil)
	}
	renewed := []*http.Cookie{res.cookie(sessionCookie)}
	if got := upstreamToken(serve(h, withCookies(navigation("GET", "/page"), renewed))); got != "at-new" {
		t.Errorf("with the renewed cookie: %q", got)
	}
}

func TestConcurrentRequestsShareOneRenewal(t *testing.T) {
	h, p, s := setup(t, func(h *Handler) { h.Scopes = []string{"openid", "offline_access", testClient} })
	stale := signedInWithTokens(t, h, p, s, "at-old", time.Minute)
	renewWith(t, p, s, "at-new")
	var wg sync.WaitGroup
	got := make([]string, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = upstreamToken(serve(h, withCookies(navigation("GET", "/page"), stale)))
		}()
	}
	wg.Wait()
	for i, g := range got {
		if g != "at-new" {
			t.Errorf("request %d: upstream got %q", i, g)
		}
	}
	p.set(func(p *hostile) {
		if p.refreshHits != 1 {
			t.Errorf("%d renewals for 8 requests with one cookie, want 1", p.refreshHits)
		}
	})
}

func TestRefusedRenewalSignsOutCleanly(t *testing.T) {
	h, p, s := setup(t, nil)
	stale := signedInWithTokens(t, h, p, s, "at-old", time.Minute)
	p.set(func(p *hostile) {
		p.tokenReply, p.tokenCode = `{"error":"invalid_grant","error_description":"AADB2C90129: The provided grant has been revoked."}`, 400
	})
	res := serve(h, withCookies(navigation("GET", "/page"), stale))
	if res.reachedNext || res.Code != http.StatusFound || !strings.Contains(res.Header().Get("Location"), "/authorize") {
		t.Errorf("a refused renewal: %d %q, reached upstream %v", res.Code, res.Header().Get("Location"), res.reachedNext)
	}
	// Signed out for good: the cookie is refused from now on, everywhere.
	if opens(h, stale) {
		t.Error("the session the provider refused still opens")
	}
}

func TestRefreshOff(t *testing.T) {
	h, p, s := setup(t, func(h *Handler) { h.Refresh = "off" })
	stale := signedInWithTokens(t, h, p, s, "at-old", time.Minute)
	renewWith(t, p, s, "at-new")
	if got := upstreamToken(serve(h, withCookies(navigation("GET", "/page"), stale))); got != "at-old" {
		t.Errorf("refresh off: upstream got %q", got)
	}
}

// TestWhatUpstreamsSee: the usual placeholders are always defined, the
// handler's own cookies do not go upstream (the app's do), and App
// Service's token headers come with easy_auth_headers.
func TestWhatUpstreamsSee(t *testing.T) {
	h, p, s := setup(t, func(h *Handler) { h.EasyAuthHeaders = true })
	cookies := signedInWithTokens(t, h, p, s, "at-1", time.Hour)
	req := withCookies(navigation("GET", "/page"), cookies)
	req.AddCookie(&http.Cookie{Name: "app_pref", Value: "dark"})
	req.AddCookie(&http.Cookie{Name: "b2c_flow_abcdefghijklmnop", Value: "x"})
	res := serve(h, req)
	for _, name := range []string{"email", "given_name", "family_name", "idp", "tid"} {
		if v, ok := res.repl.Get("http.auth.user." + name); !ok || (name != "email" && v != "") {
			t.Errorf("{http.auth.user.%s} = %v, %v: want defined", name, v, ok)
		}
	}
	if got := res.upstream.Get("Cookie"); got != "app_pref=dark" {
		t.Errorf("upstream Cookie header %q, want only the app's cookie", got)
	}
	if res.upstream.Get("X-Ms-Token-Aad-Access-Token") != "at-1" || res.upstream.Get("X-Ms-Token-Aad-Id-Token") == "" || res.upstream.Get("X-Ms-Token-Aad-Expires-On") == "" {
		t.Errorf("App Service token headers: %v", res.upstream)
	}
	// A claim cannot shadow the tokens' namespace.
	if v, _ := res.repl.GetString("http.auth.b2c.access_token"); v != "at-1" {
		t.Errorf("{http.auth.b2c.access_token} = %q", v)
	}
}

// TestSignInHints: /.auth/login passes domain_hint, login_hint, ui_locales
// and prompt=login to the provider, over the configured defaults; nothing
// outside that allowlist gets through.
func TestSignInHints(t *testing.T) {
	h, _, _ := setup(t, func(h *Handler) { h.DomainHint, h.UILocales = "contoso.com", "en-US" })
	authorize := func(path string) url.Values {
		res := serve(h, navigation("GET", path))
		loc, _ := url.Parse(res.Header().Get("Location"))
		return loc.Query()
	}
	q := authorize("/page")
	if q.Get("domain_hint") != "contoso.com" || q.Get("ui_locales") != "en-US" || q.Has("login_hint") || q.Has("prompt") {
		t.Errorf("defaults: %v", q)
	}
	q = authorize("/.auth/login?" + url.Values{
		"domain_hint": {"facebook.com"}, "login_hint": {"ada@contoso.example"}, "ui_locales": {"fr"}, "prompt": {"login"},
		"redirect_uri": {"https://evil.example/"}, "client_id": {"other"}, "scope": {"openid evil"}, "response_mode": {"fragment"}, "p": {"B2C_1A_evil"},
	}.Encode())
	if q.Get("domain_hint") != "facebook.com" || q.Get("login_hint") != "ada@contoso.example" || q.Get("ui_locales") != "fr" || q.Get("prompt") != "login" {
		t.Errorf("hints: %v", q)
	}
	if q.Get("redirect_uri") != "http://example.com"+defaultRedirectPath || q.Get("client_id") != testClient || q.Get("scope") != "openid offline_access" || q.Has("response_mode") || q.Get("p") != "B2C_1_susi" {
		t.Errorf("a parameter outside the allowlist got through: %v", q)
	}
	if q := authorize("/.auth/login?prompt=none"); q.Has("prompt") {
		t.Errorf("prompt=none passed: %v", q)
	}
}

// TestFormPostedWhileSignedOutArrivesAfterSignIn: a same-origin form post
// without a session is kept in its sign-in's flow cookie and posted again
// after the sign-in; other posts are refused as before.
func TestFormPostedWhileSignedOutArrivesAfterSignIn(t *testing.T) {
	h, p, s := setup(t, nil)
	post := func(body, site string, change func(*http.Request)) result {
		req := navigation("POST", "/comments?thread=7")
		req.Body = io.NopCloser(strings.NewReader(body))
		req.ContentLength = int64(len(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		req.Header.Set("Sec-Fetch-Site", site)
		if change != nil {
			change(req)
		}
		return serve(h, req)
	}
	res := post("text=hello+world&n=1", "same-origin", nil)
	loc, _ := url.Parse(res.Header().Get("Location"))
	if res.Code != http.StatusFound || !strings.HasSuffix(loc.Path, "/authorize") {
		t.Fatalf("a same-origin form post while signed out: %d %q", res.Code, loc)
	}
	var fc *http.Cookie
	for _, c := range res.Result().Cookies() {
		if strings.HasPrefix(c.Name, flowCookiePrefix) && c.MaxAge > 0 {
			fc = c
		}
	}
	claims := goodClaims(p, loc.Query().Get("nonce"))
	redeemWith(p, s.sign(t, claims))
	done := serve(h, callbackRequest(loc.Query().Get("state"), fc, url.Values{"code": {"c"}}))
	body := done.Body.String()
	if done.Code != http.StatusOK || !strings.Contains(body, `<form method="post" action="/comments?thread=7">`) ||
		!strings.Contains(body, `name="text" value="hello world"`) || !strings.Contains(body, `name="n" value="1"`) {
		t.Errorf("after sign-in: %d\n%s", done.Code, body)
	}

	// The attack: another site posts a form to this one while the user is
	// signed out; re-posting it after the sign-in would carry the new
	// session (a CSRF). It is refused, as any signed-out POST was.
	for name, tc := range map[string]struct {
		body, site string
		change     func(*http.Request)
	}{
		"cross-site":    {"text=evil", "cross-site", nil},
		"same-site":     {"text=evil", "same-site", nil},
		"too large":     {"text=" + strings.Repeat("a", maxPreservedPost), "same-origin", nil},
		"not a form":    {`{"text":"x"}`, "same-origin", func(r *http.Request) { r.Header.Set("Content-Type", "application/json") }},
		"not navigated": {"text=x", "same-origin", func(r *http.Request) { r.Header.Set("Sec-Fetch-Mode", "cors") }},
	} {
		if res := post(tc.body, tc.site, tc.change); res.Code != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, res.Code)
		}
	}
}

// TestMissingClaimPlaceholdersAreEmpty: a placeholder of a claim the token
// lacks, and every user placeholder of an anonymous request, resolve to
// empty, never to their literal text.
func TestMissingClaimPlaceholdersAreEmpty(t *testing.T) {
	h, p, s := setup(t, nil)
	cookies := signedIn(t, h, p, s, nil)
	open := newTestHandler(t, p, func(h *Handler) { h.Unauthenticated = "allow" })
	for name, res := range map[string]result{
		"signed in": serve(h, withCookies(navigation("GET", "/page"), cookies)),
		"anonymous": serve(open, navigation("GET", "/page")),
	} {
		if v, ok := res.repl.GetString("http.auth.user.extension_Role"); !res.reachedNext || !ok || v != "" {
			t.Errorf("%s: {http.auth.user.extension_Role} = %q, defined %v", name, v, ok)
		}
		if got := res.repl.ReplaceKnown("{http.auth.user.extension_Role}", "-"); got != "-" {
			t.Errorf("%s: the page would show %q", name, got)
		}
	}
}
