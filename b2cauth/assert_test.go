package b2cauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"github.com/go-jose/go-jose/v4"
)

const assertionHeader = "X-B2C-Identity-Assertion"

// onSite puts the request on a server where h sits in a site block for
// hosts (none: a site that answers any host), as Caddy would.
func onSite(h *Handler, req *http.Request, hosts ...string) *http.Request {
	route := caddyhttp.Route{Handlers: []caddyhttp.MiddlewareHandler{h}}
	if len(hosts) > 0 {
		route.MatcherSets = caddyhttp.MatcherSets{{caddyhttp.MatchHost(hosts)}}
	}
	srv := &caddyhttp.Server{Routes: caddyhttp.RouteList{{Handlers: []caddyhttp.MiddlewareHandler{&caddyhttp.Subroute{Routes: caddyhttp.RouteList{route}}}}}}
	return req.WithContext(context.WithValue(req.Context(), caddyhttp.ServerCtxKey, srv))
}

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
	signedInAt := time.Now().Add(-time.Minute).Unix()
	cookies := signedIn(t, h, p, s, func(c map[string]any) { c["auth_time"], c["acrs"] = signedInAt, []string{"c1"} })
	page := func() *http.Request {
		return onSite(h, withCookies(navigation("GET", "/page"), cookies), "example.com")
	}
	req := page()
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
	// What step-up proves, for an upstream that decides for itself.
	if acrs, _ := c["acrs"].([]any); len(acrs) != 1 || acrs[0] != "c1" || c["auth_time"] != float64(signedInAt) {
		t.Errorf("acrs %v, auth_time %v", c["acrs"], c["auth_time"])
	}
	if v, _ := first.repl.GetString("http.auth.b2c.assertion"); v != token {
		t.Error("{http.auth.b2c.assertion} is not the header's assertion")
	}
	if again := serve(h, page()); again.upstream.Get(assertionHeader) != token {
		t.Error("a second request signed a new assertion")
	}
	// Near its expiry, a new one is signed; the old one is expired for an
	// app that checks exp.
	h.now = func() time.Time { return time.Now().Add(5 * time.Minute) }
	if later := serve(h, page()).upstream.Get(assertionHeader); later == token || later == "" {
		t.Error("no new assertion when the old one expires")
	}
	if exp := int64(c["exp"].(float64)); exp > time.Now().Add(5*time.Minute).Unix() {
		t.Errorf("the first assertion outlives 5 minutes: exp %d", exp)
	}
	h.now = time.Now

	// A bearer caller gets one too.
	bearer := serve(h, onSite(h, apiRequest("Bearer "+s.sign(t, accessClaims(p))), "example.com"))
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

// TestAssertionNamesItsSiteFromConfiguration: the attack — site A (which
// answers any host) and site B share one storage; a user who is nobody at
// B signs in at A, sends A's address B's Host, and presents the assertion
// A signs to B's upstream, which checks it with B's /.auth/keys, iss and
// aud. An assertion now names its site from configuration (public_url, or
// the host names of the site block), and each app signs with a ring of its
// own.
func TestAssertionNamesItsSiteFromConfiguration(t *testing.T) {
	p := newHostile(t)
	s := newSigner(t, "good")
	p.set(func(p *hostile) { p.keys = append(p.keys, s.jwk()) })
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	siteA := newTestHandler(t, p, func(h *Handler) { h.IdentityAssertion, h.storage = assertionHeader, storage })
	siteB := newTestHandler(t, p, func(h *Handler) {
		h.IdentityAssertion, h.storage, h.ClientID = assertionHeader, storage, "b-app-0000-0000-0000-000000000000"
	})
	cookies := signedIn(t, siteA, p, s, nil)
	asB := func(h *Handler, hosts ...string) result {
		req := withCookies(navigation("GET", "/admin"), cookies)
		req.Host = "b.example"
		return serve(h, onSite(h, req, hosts...))
	}

	// A names no host: no assertion for whatever Host a client sends.
	if res := asB(siteA); !res.reachedNext || res.upstream.Get(assertionHeader) != "" {
		t.Errorf("a site that names no host signed an assertion for Host b.example: %q", res.upstream.Get(assertionHeader))
	}
	// A names its hosts: b.example is not one of them.
	if res := asB(siteA, "a.example", "*.a.example"); res.upstream.Get(assertionHeader) != "" {
		t.Errorf("an assertion for a host the site does not name: %q", res.upstream.Get(assertionHeader))
	}
	// With public_url, the assertion names A, whatever the Host.
	siteA.PublicURL = "https://a.example"
	token := asB(siteA).upstream.Get(assertionHeader)
	jws, err := jose.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("no assertion with public_url: %q", token)
	}
	var c map[string]any
	_ = json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c)
	if c["iss"] != "https://a.example" || c["aud"] != "https://a.example" {
		t.Errorf("iss %v aud %v, want A's public_url", c["iss"], c["aud"])
	}
	// B's keys do not verify A's assertions.
	keys := serve(siteB, navigation("GET", "/.auth/keys"))
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(keys.Body.Bytes(), &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("B's /.auth/keys: %d %s", keys.Code, keys.Body)
	}
	for _, k := range set.Keys {
		if _, err := jws.Verify(k); err == nil {
			t.Error("A's assertion verifies with B's /.auth/keys")
		}
	}
}

// TestEveryBlockStripsItsAssertionHeader: the attack — the first b2c_auth
// on a path has no identity_assertion, a later one (which lets this path
// through anonymously) has; the client's forged X-B2C-Identity-Assertion
// reached the upstream, since headers were stripped once, for the first.
func TestEveryBlockStripsItsAssertionHeader(t *testing.T) {
	p := newHostile(t)
	first := newTestHandler(t, p, func(h *Handler) { h.Unauthenticated = "allow" })
	second := newTestHandler(t, p, func(h *Handler) { h.IdentityAssertion, h.Unauthenticated = assertionHeader, "allow" })
	req := navigation("GET", "/page")
	req.Header.Set(assertionHeader, "forged")
	// The same name as CGI and PHP read it (HTTP_X_..._ASSERTION).
	req.Header[strings.ReplaceAll(assertionHeader, "-", "_")] = []string{"forged"}
	req.Header[strings.ToLower(strings.ReplaceAll(assertionHeader, "-", "."))] = []string{"forged"}
	ctx := context.WithValue(req.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
	var upstream http.Header
	app := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { upstream = r.Header.Clone(); return nil })
	err := first.ServeHTTP(httptest.NewRecorder(), req.WithContext(ctx), caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return second.ServeHTTP(w, r, app)
	}))
	if err != nil || upstream == nil {
		t.Fatalf("the chain did not reach the app: %v", err)
	}
	for k, v := range upstream {
		if asCGIReadsIt(k) == asCGIReadsIt(assertionHeader) {
			t.Errorf("the client's %s reached the upstream: %q", k, v)
		}
	}
}
