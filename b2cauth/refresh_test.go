package b2cauth

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// refreshGrants is how many refresh grants the provider has received.
func refreshGrants(p *hostile) (n int) {
	p.set(func(p *hostile) { n = p.refreshHits })
	return n
}

// TestConditionalAccessEndsTheSession: a refresh refused with
// interaction_required (MFA step-up, sign-in frequency, a claims
// challenge) ends the session and sends the browser through /authorize
// again, with the challenge, to where it was going; an API request gets
// 401; no more refresh grants are sent for it.
func TestConditionalAccessEndsTheSession(t *testing.T) {
	challenge := `{"access_token":{"capolids":{"essential":true,"values":["c1c8a1e0-0000-4000-8000-000000000001"]}}}`
	for _, tc := range []struct {
		name, reply, wantClaims string
	}{
		{"step-up with a claims challenge", `{"error":"interaction_required","error_description":"AADSTS50076: Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication.\r\nTrace ID: 1\r\nCorrelation ID: 2\r\nTimestamp: 2026-12-01 10:00:00Z","error_codes":[50076],"suberror":"basic_action","claims":` + jsonString(challenge) + `}`, challenge},
		// The shape of real AADSTS50076 answers (captures, not a Microsoft
		// page): invalid_grant with suberror and claims.
		{"step-up as invalid_grant", `{"error":"invalid_grant","error_description":"AADSTS50076: Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '00000003-0000-0000-c000-000000000000'.\r\nTrace ID: 1\r\nCorrelation ID: 2\r\nTimestamp: 2026-12-01 10:00:00Z","error_codes":[50076],"error_uri":"https://login.microsoftonline.com/error?code=50076","suberror":"basic_action","claims":` + jsonString(challenge) + `}`, challenge},
		{"MFA registration as invalid_grant, no claims", `{"error":"invalid_grant","error_description":"AADSTS50079: Due to a configuration change made by your administrator, or because you moved to a new location, you are required to enroll in multi-factor authentication.","error_codes":[50079],"suberror":"additional_action"}`, ""},
		{"sign-in frequency", `{"error":"interaction_required","error_description":"AADSTS70043: The refresh token has expired or is invalid due to sign-in frequency checks by conditional access.","error_codes":[70043]}`, ""},
		{"consent", `{"error":"consent_required","error_description":"AADSTS65001: The user or administrator has not consented to use the application."}`, ""},
		{"login", `{"error":"login_required","error_description":"AADSTS50058: A silent sign-in request was sent but no user is signed in."}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, p, s := setup(t, nil)
			stale := signedInWithTokens(t, h, p, s, "at-old", time.Minute)
			p.set(func(p *hostile) { p.tokenReply, p.tokenCode = tc.reply, 400 })
			h.now = func() time.Time { return time.Now().Add(10 * time.Minute) } // past the sign-in loop window

			res := serve(h, withCookies(navigation("GET", "/reports?q=1"), stale))
			loc, _ := url.Parse(res.Header().Get("Location"))
			if res.reachedNext || res.Code != http.StatusFound || !strings.HasSuffix(loc.Path, "/authorize") {
				t.Fatalf("a browser after interaction_required: %d %q, reached upstream %v", res.Code, loc, res.reachedNext)
			}
			if got := loc.Query().Get("claims"); got != tc.wantClaims {
				t.Errorf("claims sent to /authorize: %q, want %q", got, tc.wantClaims)
			}
			// The re-authentication names the account ("Apps can use this
			// parameter during reauthentication").
			if got := loc.Query().Get("login_hint"); got != "ada@contoso.example" {
				t.Errorf("login_hint of the re-authentication: %q", got)
			}
			if c := res.cookie(sessionCookie); c == nil || c.MaxAge >= 0 {
				t.Error("the session cookie is not cleared")
			}
			// The flow returns where the user was going.
			state := loc.Query().Get("state")
			var flowCookie *http.Cookie
			for _, c := range res.Result().Cookies() {
				if strings.HasPrefix(c.Name, flowCookiePrefix) {
					flowCookie = c
				}
			}
			if f := readFlow(t, h, flowCookie); f.Return != "/reports?q=1" || f.State != state {
				t.Errorf("the new sign-in returns to %q", f.Return)
			}
			// The session is over: no request serves it, none sends a grant.
			grants := refreshGrants(p)
			api := serve(h, withCookies(apiRequest(""), stale))
			if api.Code != http.StatusUnauthorized || api.reachedNext {
				t.Errorf("an API request with the ended session: %d", api.Code)
			}
			if opens(h, stale) || refreshGrants(p) != grants {
				t.Errorf("the ended session still opens, or sends grants (%d more)", refreshGrants(p)-grants)
			}
		})
	}
}

// TestConditionalAccessBlockDoesNotLoop: a provider that asks for
// interaction again right after a fresh sign-in (a Conditional Access
// block) gets the user a page that says so, not another redirect.
func TestConditionalAccessBlockDoesNotLoop(t *testing.T) {
	for _, reply := range []string{
		`{"error":"interaction_required","error_description":"AADSTS53003: Access has been blocked by Conditional Access policies."}`,
		`{"error":"invalid_grant","error_description":"AADSTS50076: you must use multi-factor authentication.","error_codes":[50076],"suberror":"basic_action","claims":"{\"access_token\":{\"capolids\":{\"essential\":true,\"values\":[\"p1\"]}}}"}`,
	} {
		h, p, s := setup(t, nil)
		fresh := signedInWithTokens(t, h, p, s, "at-short", time.Minute) // tokens that need renewing at once
		p.set(func(p *hostile) { p.tokenReply, p.tokenCode = reply, 400 })
		res := serve(h, withCookies(navigation("GET", "/page"), fresh))
		if res.Code != http.StatusForbidden || res.reachedNext || !strings.Contains(res.Body.String(), "Access blocked") {
			t.Errorf("interaction asked again right after sign-in (%.40s): %d %q", reply, res.Code, res.Header().Get("Location"))
		}
		if opens(h, fresh) {
			t.Error("the blocked session still opens")
		}
	}
}

// TestTransientRenewalFailureBacksOff: a provider that fails (503, a
// timeout) keeps the session on its live tokens with at most one refresh
// grant per backoff step, shared by concurrent requests; once the tokens
// have expired, the browser is sent to sign in instead of being served on
// dead tokens, and the session comes back when the provider does.
func TestTransientRenewalFailureBacksOff(t *testing.T) {
	h, p, s := setup(t, nil)
	clock := time.Now()
	h.now = func() time.Time { return clock }
	stale := signedInWithTokens(t, h, p, s, "at-old", 3*time.Minute) // within the renewal margin
	p.set(func(p *hostile) {
		p.tokenReply, p.tokenCode = `{"error":"temporarily_unavailable","error_description":"AADSTS90033: A transient error has occurred."}`, 503
	})

	for i := range 5 {
		if got := upstreamToken(serve(h, withCookies(navigation("GET", "/page"), stale))); got != "at-old" {
			t.Fatalf("request %d while renewals fail: upstream got %q, want the live token", i, got)
		}
	}
	if n := refreshGrants(p); n != 1 {
		t.Errorf("5 requests within one backoff step sent %d refresh grants, want 1", n)
	}
	clock = clock.Add(renewalBackoff + time.Second)
	serve(h, withCookies(navigation("GET", "/page"), stale))
	serve(h, withCookies(navigation("GET", "/page"), stale))
	if n := refreshGrants(p); n != 2 {
		t.Errorf("after one backoff step: %d grants, want 2", n)
	}
	// Once the tokens have expired, a browser signs in again; the session
	// was not the provider's to end, so it is not revoked.
	clock = clock.Add(4 * time.Minute)
	res := serve(h, withCookies(navigation("GET", "/page"), stale))
	if res.reachedNext || res.Code != http.StatusFound || !strings.Contains(res.Header().Get("Location"), "/authorize") {
		t.Errorf("on dead tokens: %d, reached upstream %v", res.Code, res.reachedNext)
	}
	if api := serve(h, withCookies(apiRequest(""), stale)); api.Code != http.StatusUnauthorized {
		t.Errorf("an API request on dead tokens: %d", api.Code)
	}
	// The provider is back: the next allowed retry renews the session.
	renewWith(t, p, s, "at-new")
	clock = clock.Add(maxRenewalBackoff)
	if got := upstreamToken(serve(h, withCookies(navigation("GET", "/page"), stale))); got != "at-new" {
		t.Errorf("after the provider recovered: upstream got %q", got)
	}
}

// TestSessionsWithoutRefreshTokenKeepTheirLifetime: without a refresh
// token (issuer mode without offline_access), nothing is renewed and the
// session lives until session_lifetime, as before.
func TestSessionsWithoutRefreshTokenKeepTheirLifetime(t *testing.T) {
	h, p, s := setup(t, nil)
	state, nonce, fc := pendingFlow(t, h, "/")
	tokenReply(p, s.sign(t, goodClaims(p, nonce)), "")
	res := serve(h, callbackRequest(state, fc, url.Values{"code": {"c"}}))
	cookies := []*http.Cookie{res.cookie(sessionCookie)}
	h.now = func() time.Time { return time.Now().Add(2 * time.Hour) } // the ID token expired an hour ago
	if !opens(h, cookies) || refreshGrants(p) != 0 {
		t.Error("a session without a refresh token ended before session_lifetime")
	}
}

func jsonString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// readFlow opens a flow cookie.
func readFlow(t *testing.T, h *Handler, c *http.Cookie) flow {
	t.Helper()
	var f flow
	if c == nil {
		t.Fatal("no flow cookie")
	}
	data, ok := h.codec.Open(c.Value, flowPurpose)
	if !ok || json.Unmarshal(data, &f) != nil {
		t.Fatal("the flow cookie does not open")
	}
	return f
}

// TestReauthenticationNamesTheAccount: a renewal the provider refuses
// (invalid_grant: AADB2C90129, a revoked grant) ends the session, and the
// browser's new sign-in carries the account (login_hint) and the site's
// domain_hint, as Microsoft says apps may during reauthentication.
func TestReauthenticationNamesTheAccount(t *testing.T) {
	h, p, s := setup(t, func(h *Handler) { h.DomainHint = "contoso.example" })
	stale := signedInWithTokens(t, h, p, s, "at-old", time.Minute)
	p.set(func(p *hostile) {
		p.tokenReply, p.tokenCode = `{"error":"invalid_grant","error_description":"AADB2C90129: The provided grant has been revoked. Please reauthenticate and try again.\r\nCorrelation ID: 1\r\nTimestamp: 2026-12-01 10:00:00Z"}`, 400
	})
	h.now = func() time.Time { return time.Now().Add(10 * time.Minute) }
	res := serve(h, withCookies(navigation("GET", "/page"), stale))
	loc, _ := url.Parse(res.Header().Get("Location"))
	if res.Code != http.StatusFound || !strings.HasSuffix(loc.Path, "/authorize") {
		t.Fatalf("after a refused renewal: %d %q", res.Code, loc)
	}
	if q := loc.Query(); q.Get("login_hint") != "ada@contoso.example" || q.Get("domain_hint") != "contoso.example" || q.Get("claims") != "" {
		t.Errorf("the re-authentication's hints: %v", q)
	}
}
