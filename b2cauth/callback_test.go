package b2cauth

import (
	"cmp"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/oidcprovider"
	"github.com/go-jose/go-jose/v4"
)

// redeemWith makes the hostile token endpoint answer with this ID token.
func redeemWith(p *hostile, idToken string) {
	body, _ := json.Marshal(map[string]any{"id_token": idToken, "token_type": "Bearer", "not_before": "1442340812", "id_token_expires_in": "3600"})
	p.set(func(p *hostile) { p.tokenReply, p.tokenCode = string(body), 200 })
}

func TestCallbackSignsInWithAGoodToken(t *testing.T) {
	p := newHostile(t)
	good := newSigner(t, "good")
	p.set(func(p *hostile) { p.keys = append(p.keys, good.jwk()) })
	h := newTestHandler(t, p, nil)

	state, nonce, fc := pendingFlow(t, h, "/private?x=1")
	// B2C answers with an ID token only, numbers as strings: accepted.
	redeemWith(p, good.sign(t, goodClaims(p, nonce)))
	res := serve(h, callbackRequest(state, fc, url.Values{"code": {"c0de"}}))
	if res.Code != http.StatusFound || res.Header().Get("Location") != "/private?x=1" {
		t.Fatalf("callback: %d %q %s", res.Code, res.Header().Get("Location"), res.Body)
	}
	s := res.cookie(sessionCookie)
	if s == nil || !s.HttpOnly || s.SameSite != http.SameSiteLaxMode || s.Path != "/" {
		t.Fatalf("session cookie %+v", s)
	}
	if gone := res.cookie(fc.Name); gone == nil || gone.MaxAge >= 0 {
		t.Error("the flow cookie is not deleted: the callback could be replayed")
	}

	// The session gives the identity to the next handler.
	req := navigation("GET", "/private")
	req.AddCookie(s)
	next := serve(h, req)
	if !next.reachedNext {
		t.Fatalf("signed-in request did not go on: %d", next.Code)
	}
	for k, want := range map[string]string{"id": "user-1", "email": "ada@contoso.example", "emails": "ada@contoso.example", "policy": "B2C_1_susi", "name": "Ada"} {
		if got, _ := next.repl.GetString("http.auth.user." + k); got != want {
			t.Errorf("{http.auth.user.%s} = %q, want %q", k, got, want)
		}
	}
}

// TestHostileIDTokensSignNobodyIn feeds the callback ID tokens that each
// break one rule. None may start a session, and none may cause a 500.
func TestHostileIDTokensSignNobodyIn(t *testing.T) {
	p := newHostile(t)
	good, evil := newSigner(t, "good"), newSigner(t, "evil")
	p.set(func(p *hostile) { p.keys = []jose.JSONWebKey{good.jwk()} })
	h := newTestHandler(t, p, nil)

	with := func(nonce string, change func(map[string]any)) map[string]any {
		c := goodClaims(p, nonce)
		change(c)
		return c
	}
	future := time.Now().Add(time.Hour).Unix()
	cases := map[string]func(nonce string) string{
		// Signed by a key that is not the provider's, under the provider's kid.
		"bad signature": func(n string) string {
			return (signer{kid: "good", key: evil.key}).sign(t, goodClaims(p, n))
		},
		// alg none: no signature at all.
		"alg none": func(n string) string {
			return unsigned(map[string]any{"alg": "none", "typ": "JWT", "kid": "good"}, goodClaims(p, n), "")
		},
		// HS256 keyed with the public key, hoping it is taken as a shared secret.
		"hmac with the public key": func(n string) string { return hmacWithPublicKey(t, good, goodClaims(p, n)) },
		"wrong issuer": func(n string) string {
			return good.sign(t, with(n, func(c map[string]any) { c["iss"] = "https://evil.example/v2.0/" }))
		},
		"wrong audience": func(n string) string {
			return good.sign(t, with(n, func(c map[string]any) { c["aud"] = "another-client" }))
		},
		"azp of another client": func(n string) string {
			return good.sign(t, with(n, func(c map[string]any) { c["aud"] = []string{testClient, "other"}; c["azp"] = "other" }))
		},
		"expired": func(n string) string {
			return good.sign(t, with(n, func(c map[string]any) { c["exp"] = time.Now().Add(-2 * time.Hour).Unix() }))
		},
		"nbf in the future": func(n string) string {
			return good.sign(t, with(n, func(c map[string]any) { c["nbf"] = future }))
		},
		"iat in the future": func(n string) string {
			return good.sign(t, with(n, func(c map[string]any) { c["iat"] = future }))
		},
		"iat missing":   func(n string) string { return good.sign(t, with(n, func(c map[string]any) { delete(c, "iat") })) },
		"sub missing":   func(n string) string { return good.sign(t, with(n, func(c map[string]any) { delete(c, "sub") })) },
		"nonce missing": func(n string) string { return good.sign(t, with(n, func(c map[string]any) { delete(c, "nonce") })) },
		"nonce wrong": func(n string) string {
			return good.sign(t, with(n, func(c map[string]any) { c["nonce"] = "replayed-from-another-sign-in" }))
		},
		"unknown kid": func(n string) string { return newSigner(t, "unknown").sign(t, goodClaims(p, n)) },
		"garbage":     func(string) string { return "not.a.jwt" },
	}
	for name, token := range cases {
		t.Run(name, func(t *testing.T) {
			state, nonce, fc := pendingFlow(t, h, "/")
			redeemWith(p, token(nonce))
			res := serve(h, callbackRequest(state, fc, url.Values{"code": {"c0de"}}))
			if res.Code >= 500 || res.Code == http.StatusFound {
				t.Errorf("got %d, want a refusal\n%s", res.Code, res.Body)
			}
			if c := res.cookie(sessionCookie); c != nil && c.MaxAge >= 0 {
				t.Errorf("a session cookie was set")
			}
		})
	}
}

func TestKeyRotationIsPickedUp(t *testing.T) {
	p := newHostile(t)
	k1, k2 := newSigner(t, "k1"), newSigner(t, "k2")
	p.set(func(p *hostile) { p.keys = []jose.JSONWebKey{k1.jwk()} })
	h := newTestHandler(t, p, nil)

	signIn := func(s signer) int {
		state, nonce, fc := pendingFlow(t, h, "/")
		redeemWith(p, s.sign(t, goodClaims(p, nonce)))
		return serve(h, callbackRequest(state, fc, url.Values{"code": {"c"}})).Code
	}
	if code := signIn(k1); code != http.StatusFound {
		t.Fatalf("k1: %d", code)
	}
	// Before the provider publishes k2, a token signed with it is refused.
	if code := signIn(k2); code != http.StatusUnauthorized {
		t.Errorf("k2 before rotation: %d", code)
	}
	p.set(func(p *hostile) { p.keys = []jose.JSONWebKey{k2.jwk(), k1.jwk()} })
	if code := signIn(k2); code != http.StatusFound {
		t.Errorf("k2 after rotation: %d, want the JWKS fetched again", code)
	}
	// A flood of unknown kids does not make a JWKS fetch each.
	p.set(func(p *hostile) { p.jwksHits = 0 })
	for i := range 20 {
		signIn(newSigner(t, "flood"+string(rune('a'+i))))
	}
	if p.jwksHits > 3 {
		t.Errorf("%d JWKS fetches for 20 unknown kids: not rate-limited", p.jwksHits)
	}
}

// TestRemovedKeyStopsBeingTrusted: a key the provider no longer publishes
// (a leaked key, withdrawn) is refused once the keys are a day old, even
// though no token ever named an unknown kid.
func TestRemovedKeyStopsBeingTrusted(t *testing.T) {
	p := newHostile(t)
	leaked, next := newSigner(t, "leaked"), newSigner(t, "next")
	p.set(func(p *hostile) { p.keys = []jose.JSONWebKey{leaked.jwk(), next.jwk()} })
	h := newTestHandler(t, p, nil)
	clock := time.Now()
	h.now = func() time.Time { return clock }
	signIn := func(s signer) int {
		state, nonce, fc := pendingFlow(t, h, "/")
		claims := goodClaims(p, nonce)
		claims["iat"], claims["nbf"], claims["exp"] = clock.Unix(), clock.Unix(), clock.Add(time.Hour).Unix()
		redeemWith(p, s.sign(t, claims))
		return serve(h, callbackRequest(state, fc, url.Values{"code": {"c"}})).Code
	}
	if code := signIn(leaked); code != http.StatusFound {
		t.Fatalf("before withdrawal: %d", code)
	}
	p.set(func(p *hostile) { p.keys = []jose.JSONWebKey{next.jwk()} })
	clock = clock.Add(oidcprovider.MaxAge - time.Hour)
	if code := signIn(leaked); code != http.StatusFound {
		t.Errorf("within a day, the known keys are used without fetching: %d", code)
	}
	clock = clock.Add(2 * time.Hour)
	if code := signIn(leaked); code != http.StatusUnauthorized {
		t.Errorf("a day later, the withdrawn key still signs users in: %d", code)
	}
	if code := signIn(next); code != http.StatusFound {
		t.Errorf("the published key: %d", code)
	}
}

func TestHostileCallbacks(t *testing.T) {
	p := newHostile(t)
	h := newTestHandler(t, p, nil)

	t.Run("state missing", func(t *testing.T) {
		res := serve(h, navigation("GET", defaultRedirectPath+"?code=x"))
		if res.Code != http.StatusBadRequest {
			t.Errorf("%d", res.Code)
		}
	})
	t.Run("state without its cookie", func(t *testing.T) {
		state, _, _ := pendingFlow(t, h, "/")
		if res := serve(h, callbackRequest(state, nil, url.Values{"code": {"x"}})); res.Code != http.StatusBadRequest {
			t.Errorf("%d", res.Code)
		}
	})
	t.Run("state of another flow", func(t *testing.T) {
		_, _, fc := pendingFlow(t, h, "/")
		other, _, _ := pendingFlow(t, h, "/")
		// The other flow's state with this flow's cookie under the other's name.
		fc.Name = flowCookiePrefix + other[:16]
		if res := serve(h, callbackRequest(other, fc, url.Values{"code": {"x"}})); res.Code != http.StatusBadRequest {
			t.Errorf("%d", res.Code)
		}
	})
	t.Run("tampered flow cookie", func(t *testing.T) {
		state, _, fc := pendingFlow(t, h, "/")
		fc.Value = fc.Value[:len(fc.Value)-4] + "AAAA"
		if res := serve(h, callbackRequest(state, fc, url.Values{"code": {"x"}})); res.Code != http.StatusBadRequest {
			t.Errorf("%d", res.Code)
		}
	})
	t.Run("error description with HTML", func(t *testing.T) {
		state, _, fc := pendingFlow(t, h, "/")
		res := serve(h, callbackRequest(state, fc, url.Values{"error": {"server_error"}, "error_description": {"AADB2C90999: <script>alert(1)</script>\r\nCorrelation ID: x\r\n"}}))
		body := res.Body.String()
		if res.Code != http.StatusUnauthorized || strings.Contains(body, "script") || !strings.Contains(body, "AADB2C90999") {
			t.Errorf("%d\n%s", res.Code, body)
		}
	})
	t.Run("forgot password starts the reset policy", func(t *testing.T) {
		state, _, fc := pendingFlow(t, h, "/wanted")
		res := serve(h, callbackRequest(state, fc, url.Values{"error": {"access_denied"}, "error_description": {"AADB2C90118: The user has forgotten their password.\r\nCorrelation ID: 9cf9ee35-db9c-40e1-9958-4b758492421a\r\nTimestamp: 2021-08-02 10:35:08Z\r\n"}}))
		if res.Code != http.StatusFound || !strings.Contains(res.Header().Get("Location"), "p=B2C_1_reset") {
			t.Errorf("%d %q", res.Code, res.Header().Get("Location"))
		}
	})
	t.Run("cancel goes back", func(t *testing.T) {
		state, _, fc := pendingFlow(t, h, "/wanted")
		res := serve(h, callbackRequest(state, fc, url.Values{"error": {"access_denied"}, "error_description": {"AADB2C90091: The user has cancelled entering self-asserted information.\r\n"}}))
		if res.Code != http.StatusFound || res.Header().Get("Location") != "/wanted" {
			t.Errorf("%d %q", res.Code, res.Header().Get("Location"))
		}
	})
	t.Run("token endpoint error names the code", func(t *testing.T) {
		state, _, fc := pendingFlow(t, h, "/")
		p.set(func(p *hostile) {
			p.tokenCode = 400
			p.tokenReply = `{"error":"invalid_grant","error_description":"AADB2C90088: The provided grant has not been issued for this endpoint.\r\nCorrelation ID: f9ba829c\r\n"}`
		})
		res := serve(h, callbackRequest(state, fc, url.Values{"code": {"x"}}))
		if res.Code != http.StatusUnauthorized || !strings.Contains(res.Body.String(), "AADB2C90088") {
			t.Errorf("%d %s", res.Code, res.Body)
		}
	})
	t.Run("wrong method", func(t *testing.T) {
		if res := serve(h, navigation("DELETE", defaultRedirectPath)); res.Code != http.StatusMethodNotAllowed {
			t.Errorf("%d", res.Code)
		}
	})
	t.Run("form_post without the cookie is posted again from this site", func(t *testing.T) {
		state, _, _ := pendingFlow(t, h, "/")
		req := navigation("POST", defaultRedirectPath)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Body = io.NopCloser(strings.NewReader("state=" + state + "&code=%22%3E%3Cscript%3E"))
		res := serve(h, req)
		body := res.Body.String()
		if res.Code != 200 || !strings.Contains(body, `name="b2c_resubmit"`) || strings.Contains(body, `"><script>`) {
			t.Errorf("%d\n%s", res.Code, body)
		}
	})
}

func TestProviderDownAnswers503ThenRecovers(t *testing.T) {
	p := newHostile(t)
	p.set(func(p *hostile) { p.down = true })
	h := newTestHandler(t, p, nil)
	res := serve(h, navigation("GET", "/"))
	if res.Code != http.StatusServiceUnavailable || res.Header().Get("Retry-After") == "" {
		t.Fatalf("provider down: %d", res.Code)
	}
	p.set(func(p *hostile) { p.down = false })
	// Within the backoff, requests fail fast without asking the provider.
	if res := serve(h, navigation("GET", "/")); res.Code != http.StatusServiceUnavailable {
		t.Errorf("within backoff: %d", res.Code)
	}
	// After it (the handler's clock moves past the longest backoff), it
	// recovers.
	h.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	if res := serve(h, navigation("GET", "/")); res.Code != http.StatusFound {
		t.Errorf("after recovery: %d", res.Code)
	}
}

// pendingAfter visits path n times as one browser would, keeping the
// cookies it is sent (and dropping those it is told to); it returns the
// cookies named with prefix that the browser holds, and the name of the
// first one set.
func pendingAfter(h *Handler, path, prefix string, n int) (jar map[string]*http.Cookie, first string) {
	jar = map[string]*http.Cookie{}
	for range n {
		req := navigation("GET", path)
		for _, c := range jar {
			req.AddCookie(c)
		}
		for _, c := range serve(h, req).Result().Cookies() {
			switch {
			case !strings.HasPrefix(c.Name, prefix):
			case c.MaxAge < 0:
				delete(jar, c.Name)
			default:
				jar[c.Name] = c
				first = cmp.Or(first, c.Name)
			}
		}
	}
	return jar, first
}

// TestPendingFlowsAreCapped: a page that starts sign-ins in a loop cannot
// pile up flow cookies in the browser; the oldest go first.
func TestPendingFlowsAreCapped(t *testing.T) {
	h := newTestHandler(t, newHostile(t), nil)
	jar, first := pendingAfter(h, "/", flowCookiePrefix, 8)
	if len(jar) != maxPending {
		t.Errorf("%d pending flow cookies, want the cap %d", len(jar), maxPending)
	}
	if _, ok := jar[first]; ok {
		t.Error("the oldest flow was kept")
	}
}

// TestProviderErrorDetailsGoToTheLog: the attack — any visitor who gets a
// sign-in refused reads the provider's error_description on the page;
// AADSTS700211 names the app's federated credential (its issuer and
// subject). The page shows the code and a sentence; the description is in
// the log, for the operators.
func TestProviderErrorDetailsGoToTheLog(t *testing.T) {
	h, _, _ := setup(t, nil)
	core, logs := observer.New(zapcore.InfoLevel)
	h.logger = zap.New(core)
	description := "AADSTS700211: No matching federated identity record found for presented assertion issuer 'https://oidc.prod-aks.azure.com/4f1c9d2e/'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion.\r\nTrace ID: 1\r\nCorrelation ID: 2\r\nTimestamp: 2026-12-01 10:00:00Z"
	state, _, fc := pendingFlow(t, h, "/")
	res := serve(h, callbackRequest(state, fc, url.Values{"error": {"invalid_request"}, "error_description": {description}}))
	body := res.Body.String()
	if res.Code != http.StatusUnauthorized || !strings.Contains(body, "AADSTS700211") || strings.Contains(body, "oidc.prod-aks") || strings.Contains(body, "federated") {
		t.Errorf("the page: %d\n%s", res.Code, body)
	}
	logged := logs.FilterField(zap.String("description", description)).Len()
	if logged != 1 {
		t.Errorf("the description was logged %d times, want once", logged)
	}
}
