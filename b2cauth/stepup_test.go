package b2cauth

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// entraOn is an Entra-shaped handler (issuer mode) on the hostile
// provider, with the change.
func entraOn(t *testing.T, p *hostile, change func(*Handler)) *Handler {
	return newTestHandler(t, p, func(h *Handler) {
		h.Authority, h.Policy, h.PasswordResetPolicy = "", "", ""
		h.Issuer = p.srv.URL + "/contoso.onmicrosoft.com/entra/v2.0"
		if change != nil {
			change(h)
		}
	})
}

// stepUpRedirect requests path with the session and returns the authorize
// URL it is sent to and the flow cookie.
func stepUpRedirect(t *testing.T, h *Handler, cookies []*http.Cookie, path string) (*url.URL, *http.Cookie) {
	t.Helper()
	res := serve(h, withCookies(navigation("GET", path), cookies))
	loc, _ := url.Parse(res.Header().Get("Location"))
	if res.Code != http.StatusFound || res.reachedNext || !strings.HasSuffix(loc.Path, "/authorize") {
		t.Fatalf("%s without the step-up: %d %q (reached the app: %v)", path, res.Code, loc, res.reachedNext)
	}
	for _, c := range res.Result().Cookies() {
		if strings.HasPrefix(c.Name, flowCookiePrefix) {
			return loc, c
		}
	}
	t.Fatal("no flow cookie")
	return nil, nil
}

// finishStepUp answers the step-up's authorize request with an ID token of
// the claims (changed), and returns the callback's result.
func finishStepUp(t *testing.T, h *Handler, p *hostile, s signer, loc *url.URL, fc *http.Cookie, change func(map[string]any)) result {
	t.Helper()
	claims := goodClaims(p, readFlow(t, h, fc).Nonce)
	change(claims)
	redeemWith(p, s.sign(t, claims))
	return serve(h, callbackRequest(loc.Query().Get("state"), fc, url.Values{"code": {"c"}}))
}

// TestAuthContextStepUp: a signed-in user opening /admin, whose block
// requires the authentication context c1, is sent through /authorize with
// the claims request Microsoft documents and the account as login_hint,
// and comes back with a session that holds c1 — the same cookie, so the
// site's other block keeps it. A provider that does not give c1 ends at a
// page, and the session the user had stays.
func TestAuthContextStepUp(t *testing.T) {
	p := newHostile(t)
	s := newSigner(t, "good")
	p.set(func(p *hostile) { p.keys = append(p.keys, s.jwk()) })
	site := entraOn(t, p, nil)
	admin := entraOn(t, p, func(h *Handler) { h.RequireAuthContext = []string{"c1"} })
	cookies := signedIn(t, site, p, s, nil)
	if !opens(site, cookies) {
		t.Fatal("the site does not open")
	}

	loc, fc := stepUpRedirect(t, admin, cookies, "/admin/panel?x=1")
	q := loc.Query()
	if q.Get("claims") != `{"id_token":{"acrs":{"essential":true,"value":"c1"}}}` || q.Get("login_hint") != "ada@contoso.example" {
		t.Errorf("the step-up's authorize request: claims %q login_hint %q", q.Get("claims"), q.Get("login_hint"))
	}
	if f := readFlow(t, admin, fc); f.Return != "/admin/panel?x=1" || f.Need == nil || len(f.Need.Contexts) != 1 {
		t.Errorf("the step-up flow: %+v", f)
	}

	// A provider that does not give c1: a page, no loop; the old session stays.
	refused := finishStepUp(t, admin, p, s, loc, fc, func(c map[string]any) {})
	if refused.Code != http.StatusForbidden || !strings.Contains(refused.Body.String(), "Access blocked") || len(sessionCookies(refused)) != 0 {
		t.Errorf("a provider that does not satisfy c1: %d %q", refused.Code, refused.Header().Get("Location"))
	}
	if !opens(site, cookies) {
		t.Error("the session the user had was lost")
	}

	loc, fc = stepUpRedirect(t, admin, cookies, "/admin/panel?x=1")
	done := finishStepUp(t, admin, p, s, loc, fc, func(c map[string]any) { c["acrs"] = []string{"c1"} })
	if done.Code != http.StatusFound || done.Header().Get("Location") != "/admin/panel?x=1" {
		t.Fatalf("after the step-up: %d %q", done.Code, done.Header().Get("Location"))
	}
	upgraded := sessionCookies(done)
	for name, h := range map[string]*Handler{"/admin": admin, "the rest of the site": site} {
		res := serve(h, withCookies(navigation("GET", "/admin/panel"), upgraded))
		if !res.reachedNext || res.placeholder("acrs") != "c1" {
			t.Errorf("%s with the upgraded session: %d, acrs %q", name, res.Code, res.placeholder("acrs"))
		}
	}
}

// TestRecentSignInStepUp: a session whose auth_time is older than
// require_recent_signin signs in again — prompt=login on B2C, which
// documents only that; prompt=login and max_age on the identity platform —
// and an answer whose auth_time is not new is refused on return. An Entra
// token without auth_time (an optional claim there) fails closed with a
// page that names it.
func TestRecentSignInStepUp(t *testing.T) {
	p := newHostile(t)
	s := newSigner(t, "good")
	p.set(func(p *hostile) { p.keys = append(p.keys, s.jwk()) })
	old := time.Now().Add(-time.Hour).Unix()

	b2c := newTestHandler(t, p, func(h *Handler) { h.RequireRecentSignin = caddy.Duration(15 * time.Minute) })
	cookies := signedIn(t, b2c, p, s, func(c map[string]any) { c["auth_time"] = old })
	loc, fc := stepUpRedirect(t, b2c, cookies, "/pay")
	if q := loc.Query(); q.Get("prompt") != "login" || q.Has("max_age") || q.Get("p") != "B2C_1_susi" {
		t.Errorf("B2C's re-authentication: %v", q)
	}
	if res := finishStepUp(t, b2c, p, s, loc, fc, func(c map[string]any) { c["auth_time"] = old }); res.Code != http.StatusForbidden {
		t.Errorf("an answer with the old auth_time: %d", res.Code)
	}
	loc, fc = stepUpRedirect(t, b2c, cookies, "/pay")
	res := finishStepUp(t, b2c, p, s, loc, fc, func(c map[string]any) { c["auth_time"] = time.Now().Unix() })
	if res.Code != http.StatusFound || !opens(b2c, sessionCookies(res)) {
		t.Errorf("a fresh sign-in: %d", res.Code)
	}

	entra := entraOn(t, p, func(h *Handler) { h.RequireRecentSignin = caddy.Duration(15 * time.Minute) })
	cookies = signedIn(t, entra, p, s, func(c map[string]any) { c["auth_time"] = old })
	loc, _ = stepUpRedirect(t, entra, cookies, "/pay")
	if q := loc.Query(); q.Get("prompt") != "login" || q.Get("max_age") != "900" {
		t.Errorf("the identity platform's re-authentication: %v", q)
	}
	cookies = signedIn(t, entra, p, s, nil) // no auth_time
	if res := serve(entra, withCookies(navigation("GET", "/pay"), cookies)); res.Code != http.StatusForbidden || res.reachedNext || !strings.Contains(res.Body.String(), "auth_time") {
		t.Errorf("without auth_time: %d %q", res.Code, res.Body)
	}
}

// TestPolicyStepUp: a session from the sign-up and sign-in user flow is
// sent through the MFA policy with login_hint (not id_token_hint), and
// comes back upgraded: {http.auth.user.policy} names the MFA policy, rules
// can name it, and a block that was not given that policy serves its
// callback and opens its session.
func TestPolicyStepUp(t *testing.T) {
	p := newHostile(t)
	s := newSigner(t, "good")
	p.set(func(p *hostile) { p.keys = append(p.keys, s.jwk()) })
	site := newTestHandler(t, p, nil)
	admin := newTestHandler(t, p, func(h *Handler) {
		h.RequirePolicy = []string{"B2C_1A_MFA"}
		h.Allow = []Rule{{Claim: "policy", Patterns: []string{"b2c_1a_mfa"}}}
	})
	cookies := signedIn(t, site, p, s, nil)
	loc, fc := stepUpRedirect(t, admin, cookies, "/admin")
	if q := loc.Query(); q.Get("p") != "B2C_1A_MFA" || q.Get("login_hint") != "ada@contoso.example" || q.Has("id_token_hint") {
		t.Errorf("the step-up to the MFA policy: %v", q)
	}
	// The site's own block serves the callback of the MFA flow.
	claims := goodClaims(p, readFlow(t, admin, fc).Nonce)
	claims["tfp"] = "B2C_1A_MFA"
	// Tokens that need renewing at once: the renewal must stay at the policy.
	reply, _ := json.Marshal(map[string]any{"id_token": s.sign(t, claims), "access_token": "at-mfa", "expires_in": 60, "refresh_token": "rt-mfa"})
	p.set(func(p *hostile) { p.tokenReply, p.tokenCode = string(reply), 200 })
	done := serve(site, callbackRequest(loc.Query().Get("state"), fc, url.Values{"code": {"c"}}))
	if done.Code != http.StatusFound || done.Header().Get("Location") != "/admin" {
		t.Fatalf("the MFA policy's callback: %d %s", done.Code, done.Body)
	}
	// A code is redeemed against the policy that issued it.
	if last := p.tokenPolicies[len(p.tokenPolicies)-1]; last != "B2C_1A_MFA" {
		t.Errorf("the MFA policy's code was redeemed at %q", last)
	}
	res := serve(admin, withCookies(navigation("GET", "/admin"), sessionCookies(done)))
	if !res.reachedNext || res.placeholder("policy") != "B2C_1A_MFA" {
		t.Errorf("/admin after the MFA policy: %d, policy %q", res.Code, res.placeholder("policy"))
	}
	if !opens(site, sessionCookies(done)) {
		t.Error("the rest of the site does not open the upgraded session")
	}
	if refreshes := p.refreshHits; refreshes == 0 || p.tokenPolicies[len(p.tokenPolicies)-1] != "B2C_1A_MFA" {
		t.Errorf("the upgraded session's renewal (%d) went to %q, want the MFA policy", refreshes, p.tokenPolicies[len(p.tokenPolicies)-1])
	}
}

// TestBearerStepUp: an access token without the context gets Microsoft's
// claims challenge when its client declared it can answer one (xms_cc
// cp1, any case), else 403 naming the context; one with an old auth_time
// gets RFC 9470's insufficient_user_authentication with max_age.
func TestBearerStepUp(t *testing.T) {
	p := newHostile(t)
	s := newSigner(t, "good")
	p.set(func(p *hostile) { p.keys = append(p.keys, s.jwk()) })
	api := entraOn(t, p, func(h *Handler) { h.RequireAuthContext = []string{"c1"} })
	token := func(change func(map[string]any)) string {
		c := accessClaims(p)
		change(c)
		return s.sign(t, c)
	}
	res := serve(api, apiRequest("Bearer "+token(func(c map[string]any) { c["xms_cc"] = []string{"CP1"} })))
	challenge := res.Header().Get("WWW-Authenticate")
	m := regexp.MustCompile(`claims="([^"]+)"`).FindStringSubmatch(challenge)
	if res.Code != http.StatusUnauthorized || m == nil || !strings.Contains(challenge, `error="insufficient_claims"`) || !strings.Contains(challenge, `realm=""`) ||
		!strings.Contains(challenge, `authorization_uri="`+p.srv.URL) || !strings.Contains(challenge, `client_id="`+testClient+`"`) || !strings.Contains(challenge, `cc_type="authcontext"`) {
		t.Fatalf("a client that handles claims challenges: %d %s", res.Code, challenge)
	}
	if claims, _ := base64.StdEncoding.DecodeString(m[1]); string(claims) != `{"access_token":{"acrs":{"essential":true,"value":"c1"}}}` {
		t.Errorf("the challenge's claims: %s", claims)
	}
	res = serve(api, apiRequest("Bearer "+token(func(map[string]any) {})))
	if res.Code != http.StatusForbidden || !strings.Contains(res.Header().Get("WWW-Authenticate"), "authentication context c1") {
		t.Errorf("a client without cp1: %d %s", res.Code, res.Header().Get("WWW-Authenticate"))
	}
	if res := serve(api, apiRequest("Bearer "+token(func(c map[string]any) { c["acrs"] = []string{"c1"} }))); !res.reachedNext {
		t.Errorf("a token with c1: %d", res.Code)
	}

	recent := entraOn(t, p, func(h *Handler) { h.RequireRecentSignin = caddy.Duration(15 * time.Minute) })
	for name, change := range map[string]func(map[string]any){
		"old auth_time": func(c map[string]any) { c["auth_time"] = time.Now().Add(-time.Hour).Unix() },
		"no auth_time":  func(map[string]any) {},
	} {
		res := serve(recent, apiRequest("Bearer "+token(change)))
		if h := res.Header().Get("WWW-Authenticate"); res.Code != http.StatusUnauthorized || !strings.Contains(h, `error="insufficient_user_authentication"`) || !strings.Contains(h, `max_age="900"`) {
			t.Errorf("%s: %d %s", name, res.Code, h)
		}
	}
}

// TestStepUpKeepsAPostedForm: a form posted to a path that asks for more
// goes on where it was going after the step-up, as after any sign-in.
func TestStepUpKeepsAPostedForm(t *testing.T) {
	p := newHostile(t)
	s := newSigner(t, "good")
	p.set(func(p *hostile) { p.keys = append(p.keys, s.jwk()) })
	admin := entraOn(t, p, func(h *Handler) { h.RequireAuthContext = []string{"c1"} })
	cookies := signedIn(t, admin, p, s, nil)
	body := "amount=100&to=bob"
	req := withCookies(navigation("POST", "/admin/pay"), cookies)
	req.Body, req.ContentLength = io.NopCloser(strings.NewReader(body)), int64(len(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	res := serve(admin, req)
	loc, _ := url.Parse(res.Header().Get("Location"))
	if res.Code != http.StatusFound || res.reachedNext || loc.Query().Get("claims") == "" {
		t.Fatalf("a form posted without the step-up: %d %q", res.Code, loc)
	}
	var fc *http.Cookie
	for _, c := range res.Result().Cookies() {
		if strings.HasPrefix(c.Name, flowCookiePrefix) && c.MaxAge > 0 {
			fc = c
		}
	}
	done := finishStepUp(t, admin, p, s, loc, fc, func(c map[string]any) { c["acrs"] = []string{"c1"} })
	if page := done.Body.String(); done.Code != http.StatusOK || !strings.Contains(page, `<form method="post" action="/admin/pay">`) || !strings.Contains(page, `name="amount" value="100"`) {
		t.Errorf("after the step-up: %d\n%s", done.Code, page)
	}
}
