package b2cauth

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/session"
	"github.com/caddy-b2c/caddy-b2c/b2cauth/signouts"
)

// discard is a ResponseWriter that keeps nothing.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

// bench runs one prepared request through the handler b.N times; next reads
// the user's id placeholder, as an access log would.
func bench(b *testing.B, h *Handler, req *http.Request) {
	reached := false
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		reached = true
		repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		if id, _ := repl.GetString("http.auth.user.id"); id == "" {
			b.Fatal("no user id")
		}
		return nil
	})
	w := &discard{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r := asCaddyGivesIt(req)
		clear(w.h)
		reached = false
		if err := h.ServeHTTP(w, r, next); err != nil {
			b.Fatal(err)
		}
		if !reached {
			b.Fatal("the request did not reach the next handler")
		}
	}
}

// asCaddyGivesIt is the request as Caddy's server gives it to handlers: a
// replacer with its HTTP provider mapped, and variables holding the start
// time (their allocations are Caddy's; the benchmarks count them too).
// The handler hides its cookies from upstream: each request brings them
// anew.
func asCaddyGivesIt(req *http.Request) *http.Request {
	repl := caddy.NewReplacer()
	repl.Map(func(string) (any, bool) { return nil, false }) // Caddy's {http.*}
	ctx := context.WithValue(req.Context(), caddy.ReplacerCtxKey, repl)
	vars := map[string]any{caddyhttp.TrustedProxyVarKey: false, caddyhttp.ClientIPVarKey: "127.0.0.1", "start_time": time.Now()}
	r := req.WithContext(context.WithValue(ctx, caddyhttp.VarsCtxKey, vars))
	r.Header = req.Header.Clone()
	return r
}

// TestSignedInRequestsAllocateOnlyTheirState: a signed-in request — a
// cookie session, one kept in storage, a bearer token seen before —
// allocates one object of the handler's own, the state its blocks share,
// beyond what Caddy gives every request: no key derivation, no opening of
// the cookie, no storage read, no boxing of placeholder values.
func TestSignedInRequestsAllocateOnlyTheirState(t *testing.T) {
	for _, kind := range []string{"cookie session", "cookie session over HTTPS", "session_store storage", "bearer token"} {
		t.Run(kind, func(t *testing.T) {
			h, p, s := setup(t, func(h *Handler) {
				if kind == "session_store storage" {
					h.SessionStore = "storage"
				}
			})
			req := withCookies(navigation("GET", "/page"), signedIn(t, h, p, s, nil))
			if kind == "cookie session over HTTPS" { // its cookie is __Host-b2c_session
				cookies := signedIn(t, h, p, s, nil)
				for _, c := range cookies {
					c.Name = "__Host-" + c.Name
				}
				req = withCookies(navigation("GET", "/page"), cookies)
				req.TLS = &tls.ConnectionState{}
			}
			if kind == "bearer token" {
				req = apiRequest("Bearer " + s.sign(t, accessClaims(p)))
			}
			reached := false
			next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
				if id, _ := repl.GetString("http.auth.user.id"); id == "" {
					return errors.New("no user id")
				}
				reached = true
				return nil
			})
			w := &discard{h: http.Header{}}
			if err := h.ServeHTTP(w, asCaddyGivesIt(req), next); err != nil || !reached { // caches the identity
				t.Fatalf("the signed-in request did not reach the next handler: %v", err)
			}
			caddyOnly := testing.AllocsPerRun(100, func() { _ = asCaddyGivesIt(req) })
			withHandler := testing.AllocsPerRun(100, func() {
				if err := h.ServeHTTP(w, asCaddyGivesIt(req), next); err != nil {
					t.Fatal(err)
				}
			})
			if own := withHandler - caddyOnly; own > 1 {
				t.Errorf("the handler allocates %.0f objects per signed-in request, want 1 (its request state)", own)
			}
		})
	}
}

// BenchmarkAuthenticatedRequest: a browser request with a session cookie,
// through to placeholders the next handler reads.
func BenchmarkAuthenticatedRequest(b *testing.B) {
	h, p, s := setup(b, nil)
	req := withCookies(navigation("GET", "/page"), signedIn(b, h, p, s, nil))
	bench(b, h, req)
}

// BenchmarkAuthenticatedRequestWithAssertion: the same with
// identity_assertion: the assertion signed for the session is reused, so
// the request costs a lookup, not a signature.
func BenchmarkAuthenticatedRequestWithAssertion(b *testing.B) {
	h, p, s := setup(b, func(h *Handler) { h.IdentityAssertion = "X-B2C-Identity-Assertion" })
	req := onSite(h, withCookies(navigation("GET", "/page"), signedIn(b, h, p, s, nil)), "example.com")
	bench(b, h, req)
}

// BenchmarkUnauthenticatedRedirect: a browser request without a session,
// redirected to the provider with a new flow cookie.
func BenchmarkUnauthenticatedRedirect(b *testing.B) {
	h, _, _ := setup(b, nil)
	req := navigation("GET", "/page")
	serve(h, req) // discover once
	w := &discard{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		clear(w.h)
		if err := h.ServeHTTP(w, req, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBearerCached: an API request with an access token verified before.
func BenchmarkBearerCached(b *testing.B) {
	h, p, s := setup(b, nil)
	req := apiRequest("Bearer " + s.sign(b, accessClaims(p)))
	serve(h, req)
	bench(b, h, req)
}

// BenchmarkBearerFirstTime: an access token seen for the first time (RSA
// signature check and claims), the cache emptied before each request.
func BenchmarkBearerFirstTime(b *testing.B) {
	h, p, s := setup(b, nil)
	req := apiRequest("Bearer " + s.sign(b, accessClaims(p)))
	serve(h, req)
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	w := &discard{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		h.bearerCache = session.NewCache[*identity](16)
		repl := caddy.NewReplacer()
		r := req.WithContext(context.WithValue(req.Context(), caddy.ReplacerCtxKey, repl))
		if err := h.ServeHTTP(w, r, next); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthenticatedRequestWithRevocations: the same request while
// 100,000 sessions, 10,000 provider sessions and 10,000 users are revoked:
// the check stays a few map lookups.
func BenchmarkAuthenticatedRequestWithRevocations(b *testing.B) {
	h, p, s := setup(b, nil)
	req := withCookies(navigation("GET", "/page"), signedIn(b, h, p, s, nil))
	h.signouts = signouts.New(nopStorage{}, time.Hour, h.logger)
	var entries []signouts.Entry
	for i := range 100000 {
		e := signouts.Entry{Kind: signouts.KindSession, Value: randomString(), Expires: time.Now().Add(time.Hour).Unix()}
		if i < 10000 {
			entries = append(entries,
				signouts.Entry{Kind: signouts.KindUser, Value: randomString(), Before: time.Now().UnixMilli(), Expires: e.Expires},
				signouts.Entry{Kind: signouts.KindSID, Value: randomString(), Expires: e.Expires})
		}
		entries = append(entries, e)
	}
	if err := h.signouts.Add(context.Background(), entries...); err != nil || h.signouts.Len() != 120000 {
		b.Fatalf("%d sign-outs recorded: %v", h.signouts.Len(), err)
	}
	bench(b, h, req)
}

// BenchmarkAuthenticatedRequestThreeChunks: a user with many claims and all
// three tokens, whose session needs three cookies.
func BenchmarkAuthenticatedRequestThreeChunks(b *testing.B) {
	h, p, s := setup(b, nil)
	state, nonce, fc := pendingFlow(b, h, "/")
	claims := goodClaims(p, nonce)
	var groups []string
	for range 75 {
		groups = append(groups, randomString())
	}
	claims["groups"] = groups
	access := accessClaims(p)
	access["groups"] = groups
	body, _ := json.Marshal(map[string]any{"id_token": s.sign(b, claims), "access_token": s.sign(b, access), "expires_in": 3600, "refresh_token": randomString() + randomString()})
	p.set(func(p *hostile) { p.tokenReply, p.tokenCode = string(body), 200 })
	res := serve(h, callbackRequest(state, fc, url.Values{"code": {"c"}}))
	cookies := sessionCookies(res)
	if len(cookies) != 3 {
		b.Fatalf("the session takes %d cookies, want 3", len(cookies))
	}
	bench(b, h, withCookies(navigation("GET", "/page"), cookies))
}

// nopStorage keeps nothing: a benchmark's sign-outs live in memory only.
type nopStorage struct{ certmagic.Storage }

func (nopStorage) Store(context.Context, string, []byte) error { return nil }
func (nopStorage) List(context.Context, string, bool) ([]string, error) {
	return nil, fs.ErrNotExist
}

// BenchmarkStoredSession: a browser request whose session lives in Caddy's
// storage (session_store storage), its few-hundred-byte cookie naming it:
// once the record is cached, the request reads no storage.
func BenchmarkStoredSession(b *testing.B) {
	h, p, s := setup(b, func(h *Handler) { h.SessionStore = "storage" })
	req := withCookies(navigation("GET", "/page"), signedIn(b, h, p, s, nil))
	bench(b, h, req) // the first request reads the record; the others find it cached
}
