package b2cauth

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

const assertionHeader = "X-B2C-Identity-Assertion"

// verifyAssertion checks an assertion as an upstream would: against the
// site's /.auth/keys, and its iss, aud and exp.
func verifyAssertion(t *testing.T, h *Handler, token string) map[string]any {
	t.Helper()
	keys := serve(h, navigation("GET", "/.auth/keys"))
	var set jose.JSONWebKeySet
	if keys.Code != 200 || json.Unmarshal(keys.Body.Bytes(), &set) != nil {
		t.Fatalf("/.auth/keys: %d %s", keys.Code, keys.Body)
	}
	jws, err := jose.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("not an ES256 JWS: %v", err)
	}
	k := set.Key(jws.Signatures[0].Header.KeyID)
	if len(k) != 1 {
		t.Fatal("the assertion's kid is not published")
	}
	payload, err := jws.Verify(k[0])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	_ = json.Unmarshal(payload, &c)
	if c["iss"] != "http://example.com" || c["aud"] != "http://example.com" || int64(c["exp"].(float64)) > time.Now().Add(6*time.Minute).Unix() {
		t.Errorf("assertion claims %v", c)
	}
	return c
}

// TestIdentityAssertion: the upstream gets a signed assertion of the user
// that it verifies with the site's published keys, the same one while it
// lives (no signature per request), in {http.auth.b2c.assertion} too; a
// client's own header of that name never reaches it.
func TestIdentityAssertion(t *testing.T) {
	h, p, s := setup(t, func(h *Handler) { h.IdentityAssertion = assertionHeader })
	cookies := signedIn(t, h, p, s, nil)
	req := withCookies(navigation("GET", "/page"), cookies)
	req.Header.Set(assertionHeader, "forged")
	first := serve(h, req)
	token := first.upstream.Get(assertionHeader)
	if !first.reachedNext || token == "" || token == "forged" {
		t.Fatalf("upstream got %q", token)
	}
	c := verifyAssertion(t, h, token)
	if c["sub"] != "user-1" || c["email"] != "ada@contoso.example" || c["type"] != "user" || c["policy"] != "B2C_1_susi" {
		t.Errorf("claims %v", c)
	}
	if v, _ := first.repl.GetString("http.auth.b2c.assertion"); v != token {
		t.Error("{http.auth.b2c.assertion} is not the header's assertion")
	}
	if again := serve(h, withCookies(navigation("GET", "/page"), cookies)); again.upstream.Get(assertionHeader) != token {
		t.Error("a second request signed a new assertion")
	}
	// Near its expiry, a new one is signed; the old one is expired for an
	// app that checks exp.
	h.now = func() time.Time { return time.Now().Add(5 * time.Minute) }
	if later := serve(h, withCookies(navigation("GET", "/page"), cookies)).upstream.Get(assertionHeader); later == token || later == "" {
		t.Error("no new assertion when the old one expires")
	}
	if exp := int64(c["exp"].(float64)); exp > time.Now().Add(5*time.Minute).Unix() {
		t.Errorf("the first assertion outlives 5 minutes: exp %d", exp)
	}
	h.now = time.Now

	// A bearer caller gets one too.
	bearer := serve(h, apiRequest("Bearer "+s.sign(t, accessClaims(p))))
	if c := verifyAssertion(t, h, bearer.upstream.Get(assertionHeader)); c["sub"] != "user-1" {
		t.Errorf("bearer assertion %v", c)
	}

	// Without a user, the client's header is removed all the same.
	open := newTestHandler(t, p, func(h *Handler) { h.IdentityAssertion = assertionHeader; h.Unauthenticated = "allow" })
	anon := navigation("GET", "/page")
	anon.Header.Set(assertionHeader, "forged")
	if res := serve(open, anon); !res.reachedNext || res.upstream.Get(assertionHeader) != "" {
		t.Errorf("an anonymous request's forged assertion reached upstream: %q", res.upstream.Get(assertionHeader))
	}

	// Without identity_assertion, no keys.
	plain, _, _ := setup(t, nil)
	if res := serve(plain, navigation("GET", "/.auth/keys")); res.Code != http.StatusNotFound {
		t.Errorf("/.auth/keys without identity_assertion: %d", res.Code)
	}
}
