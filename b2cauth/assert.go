package b2cauth

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/assertion"
	"github.com/caddy-b2c/caddy-b2c/internal/site"
)

// Identity assertions: what b2c_auth tells an upstream about the user,
// signed, so that an app that can be reached some other way still knows
// what came through b2c_auth. One is signed per identity and audience and
// reused until a minute before it expires: a signed-in request does not
// pay for a signature.

// assertions signs, for the site, the identity assertions its upstreams
// verify, in the header it names.
type assertions struct {
	ring     *assertion.Ring
	header   string
	audience []string                         // assertion_audience; default the site's origin
	origin   func(*http.Request) string       // the site's origin: public_url, else the request's
	names    func(*http.Request, string) bool // whether the site names that origin (siteNames)
	now      func() time.Time
	logger   *zap.Logger
}

// signedAssertion is an assertion and what it was signed for.
type signedAssertion struct {
	token    string
	audience string // the site's origin it was signed for, with the default audience
	expires  time.Time
}

// add puts the identity's assertion for this request's site in the
// request header, or, for a host the site does not name, none (and a log
// line): an assertion names its site from configuration, never from
// whatever Host a client sends.
func (a *assertions) add(r *http.Request, id *identity) error {
	origin := a.origin(r)
	signed, ok := a.reuse(id, origin) // signed for an origin checked before
	if !ok {
		if !a.names(r, origin) {
			a.logger.Warn("identity assertion not made: the request's host is not one the site names (give the site its host names, or public_url)", zap.String("host", r.Host))
			return nil
		}
		var err error
		if signed, err = a.signFor(r, id, origin); err != nil {
			return err
		}
	}
	r.Header.Set(a.header, signed)
	return nil
}

// reuse is the identity's assertion signed for origin while it has more
// than a minute to live: a signed-in request does not pay for a signature,
// nor for checking the origin again.
func (a *assertions) reuse(id *identity, origin string) (string, bool) {
	id.assertionMu.Lock()
	defer id.assertionMu.Unlock()
	if last := id.assertion; last.token != "" && last.audience == origin && a.now().Add(time.Minute).Before(last.expires) {
		return last.token, true
	}
	return "", false
}

// assertionOrigin is the site's origin an assertion names: public_url,
// else the request's (which siteNames must then find among the site's).
func (h *Handler) assertionOrigin(r *http.Request) string {
	if h.PublicURL != "" {
		return strings.TrimSuffix(h.PublicURL, "/")
	}
	return h.origin(r)
}

// siteNames tells whether origin is the site's for an assertion: always
// with public_url (origin is it); else when its host is one the site's
// routes name (a site that names none — `:443`, `http://` — needs
// public_url).
func (h *Handler) siteNames(r *http.Request, origin string) bool {
	if h.PublicURL != "" {
		return true
	}
	_, hostport, _ := strings.Cut(origin, "://")
	host := hostport
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.HasSuffix(hostport, "]") {
		host = hostport[:i]
	}
	host = strings.Trim(host, "[]")
	srv, _ := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if srv == nil {
		return false
	}
	for _, pattern := range h.siteHosts.Of(srv, h) {
		if site.HostMatches(pattern, host) {
			return true
		}
	}
	return false
}

// signFor is the identity's assertion for a site's origin.
func (a *assertions) signFor(r *http.Request, id *identity, origin string) (string, error) {
	id.assertionMu.Lock()
	defer id.assertionMu.Unlock()
	if last := id.assertion; last.token != "" && last.audience == origin && a.now().Add(time.Minute).Before(last.expires) {
		return last.token, nil // another request signed it meanwhile
	}
	var aud any = origin
	if len(a.audience) == 1 {
		aud = a.audience[0]
	} else if len(a.audience) > 1 {
		aud = a.audience
	}
	claims := map[string]any{"iss": origin, "aud": aud, "sub": id.id}
	for _, name := range []string{"type", "email", "name", "tid", "idp", "policy", "oid"} {
		if v := id.values[name]; v != "" {
			claims[name] = v
		}
	}
	for _, name := range []string{"roles", "groups", "acrs"} {
		if v := claimValues(id.claims[name]); len(v) > 0 {
			claims[name] = slices.Clone(v)
		}
	}
	if at, ok := authTime(id); ok { // so that an upstream can ask for a recent sign-in itself
		claims["auth_time"] = at.Unix()
	}
	token, exp, err := a.ring.Sign(r.Context(), claims)
	if err != nil {
		return "", err
	}
	id.assertion = signedAssertion{token: token, audience: origin, expires: exp}
	return token, nil
}

var errNoAssertions = errors.New("identity_assertion is not configured")

// keys answers /.auth/keys: the JWKS that verifies the assertions. Public,
// and cacheable for less than a key is published ahead of its use.
func (h *Handler) keys(w http.ResponseWriter, r *http.Request) error {
	if h.assertions == nil {
		return fail(w, r, http.StatusNotFound, "Not available", "This site signs no identity assertions.", errNoAssertions)
	}
	jwks, err := h.assertions.ring.JWKS(r.Context())
	if err != nil {
		return fail(w, r, http.StatusServiceUnavailable, "Unavailable", "The keys cannot be read right now.", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(int(time.Hour.Seconds())))
	w.Header().Set("Access-Control-Allow-Origin", "*")
	_, err = w.Write(jwks)
	return err
}
