package b2cauth

import (
	"crypto/tls"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// signedIn signs a user in through the hostile provider and returns the
// session cookies.
func signedIn(t testing.TB, h *Handler, p *hostile, s signer, change func(map[string]any)) []*http.Cookie {
	t.Helper()
	state, nonce, fc := pendingFlow(t, h, "/")
	claims := goodClaims(p, nonce)
	if change != nil {
		change(claims)
	}
	redeemWith(p, s.sign(t, claims))
	res := serve(h, callbackRequest(state, fc, url.Values{"code": {"c"}}))
	if res.Code != http.StatusFound {
		t.Fatalf("sign-in: %d %s", res.Code, res.Body)
	}
	return sessionCookies(res)
}

// sessionCookies are the session cookies a response sets (not those it
// clears).
func sessionCookies(res result) []*http.Cookie {
	var out []*http.Cookie
	for _, c := range res.Result().Cookies() {
		if strings.HasPrefix(c.Name, sessionCookie) && c.MaxAge >= 0 {
			out = append(out, c)
		}
	}
	return out
}

func withCookies(req *http.Request, cs []*http.Cookie) *http.Request {
	for _, c := range cs {
		req.AddCookie(c)
	}
	return req
}

func setup(t testing.TB, change func(*Handler)) (*Handler, *hostile, signer) {
	p := newHostile(t)
	s := newSigner(t, "good")
	p.set(func(p *hostile) { p.keys = append(p.keys, s.jwk()) })
	return newTestHandler(t, p, change), p, s
}

func TestBadSessionCookiesCountAsSignedOut(t *testing.T) {
	h, p, s := setup(t, nil)
	cookies := signedIn(t, h, p, s, nil)
	value := cookies[0].Value

	other := newTestHandler(t, p, func(h *Handler) {
		h.CookieSecret = []string{base64.StdEncoding.EncodeToString([]byte("another-key-another-key-another!"))}
	})
	foreign := signedIn(t, other, p, s, nil)[0].Value

	expiredHandler := newTestHandler(t, p, func(h *Handler) { h.SessionLifetime = 0 })
	expiredHandler.now = func() time.Time { return time.Now().Add(-9 * time.Hour) }
	expired := signedIn(t, expiredHandler, p, s, func(c map[string]any) {
		c["iat"] = time.Now().Add(-9 * time.Hour).Unix()
		c["nbf"] = time.Now().Add(-9 * time.Hour).Unix()
		c["exp"] = time.Now().Add(-8 * time.Hour).Unix()
	})[0].Value

	flipped := []byte(value)
	flipped[len(flipped)/2] ^= 1
	for name, v := range map[string]string{
		"tampered":   string(flipped),
		"truncated":  value[:len(value)/2],
		"foreign":    foreign,
		"expired":    expired,
		"garbage":    "%%%not-base64",
		"empty":      "",
		"chunk bomb": "99." + value,
	} {
		t.Run(name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/", nil)
			req.Header.Set("Accept", "application/json")
			req.AddCookie(&http.Cookie{Name: sessionCookie, Value: v})
			res := serve(h, req)
			if res.reachedNext || res.Code != http.StatusUnauthorized {
				t.Errorf("got %d (next reached: %v), want 401 signed out", res.Code, res.reachedNext)
			}
		})
	}
	// The good one still works.
	if res := serve(h, withCookies(navigation("GET", "/"), cookies)); !res.reachedNext {
		t.Errorf("good session refused: %d", res.Code)
	}
}

func TestCookieKeyRotation(t *testing.T) {
	h, p, s := setup(t, nil)
	cookies := signedIn(t, h, p, s, nil)
	newKey := base64.StdEncoding.EncodeToString([]byte("the-new-key-the-new-key-the-new!"))
	rotated := newTestHandler(t, p, func(h *Handler) { h.CookieSecret = []string{newKey, testCookieSecret} })
	if res := serve(rotated, withCookies(navigation("GET", "/"), cookies)); !res.reachedNext {
		t.Errorf("a session sealed with the old key is refused after rotation: %d", res.Code)
	}
	dropped := newTestHandler(t, p, func(h *Handler) { h.CookieSecret = []string{newKey} })
	if res := serve(dropped, withCookies(navigation("GET", "/"), cookies)); res.reachedNext {
		t.Error("a session sealed with a removed key still opens")
	}
}

func TestLargeSessionsAreChunked(t *testing.T) {
	h, p, s := setup(t, nil)
	cookies := signedIn(t, h, p, s, func(c map[string]any) {
		var groups []string
		for range 200 { // random, so that compression cannot fit them in one cookie
			groups = append(groups, "group-"+randomString())
		}
		c["groups"] = groups
	})
	if len(cookies) < 2 {
		t.Fatalf("a %d-cookie session: want it split", len(cookies))
	}
	for _, c := range cookies {
		if len(c.Name)+len(c.Value) > 4000 {
			t.Errorf("cookie %s is %d bytes: browsers drop it", c.Name, len(c.Value))
		}
	}
	res := serve(h, withCookies(navigation("GET", "/"), cookies))
	if g, _ := res.repl.GetString("http.auth.user.groups"); !res.reachedNext || !strings.HasPrefix(g, "group-") {
		t.Errorf("chunked session not reassembled: %d", res.Code)
	}
	// A missing chunk is no session.
	res = serve(h, withCookies(navigation("GET", "/"), cookies[:1]))
	if res.reachedNext {
		t.Error("a session with a missing chunk opened")
	}
}

func TestInactivityTimeout(t *testing.T) {
	h, p, s := setup(t, func(h *Handler) { h.InactivityTimeout = 1800_000_000_000 }) // 30m
	cookies := signedIn(t, h, p, s, nil)
	later := time.Now().Add(20 * time.Minute)
	h.now = func() time.Time { return later }
	res := serve(h, withCookies(navigation("GET", "/"), cookies))
	renewed := res.cookie(sessionCookie)
	if !res.reachedNext || renewed == nil {
		t.Fatalf("active session after 20m: %d, renewed %v", res.Code, renewed)
	}
	h.now = func() time.Time { return later.Add(25 * time.Minute) }
	if res := serve(h, withCookies(navigation("GET", "/"), cookies)); res.reachedNext {
		t.Error("a session idle for 45m still opens")
	}
	if res := serve(h, withCookies(navigation("GET", "/"), []*http.Cookie{renewed})); !res.reachedNext {
		t.Error("the session renewed at 20m, idle 25m, is refused")
	}
}

func TestSecureCookiesOnHTTPS(t *testing.T) {
	h, _, _ := setup(t, nil)
	req := navigation("GET", "https://example.com/")
	req.TLS = &tls.ConnectionState{}
	res := serve(h, req)
	var flow *http.Cookie
	for _, c := range res.Result().Cookies() {
		flow = c
	}
	if flow == nil || !flow.Secure || !flow.HttpOnly || !strings.HasPrefix(flow.Name, "__Host-") || flow.Path != "/" || flow.Domain != "" {
		t.Errorf("flow cookie on HTTPS: %+v", flow)
	}
}
