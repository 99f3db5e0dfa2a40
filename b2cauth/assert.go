package b2cauth

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// Identity assertions: what b2c_auth tells an upstream about the user,
// signed, so that an app that can be reached some other way still knows
// what came through b2c_auth. One is signed per identity and audience and
// reused until a minute before it expires: a signed-in request does not
// pay for a signature.

// signedAssertion is an assertion and what it was signed for.
type signedAssertion struct {
	token    string
	audience string // the site's origin it was signed for, with the default audience
	expires  time.Time
}

// assertFor is the identity's assertion for this request's site.
func (h *Handler) assertFor(r *http.Request, id *identity) (string, error) {
	origin := h.origin(r)
	now := h.now()
	id.assertionMu.Lock()
	defer id.assertionMu.Unlock()
	if a := id.assertion; a.token != "" && a.audience == origin && now.Add(time.Minute).Before(a.expires) {
		return a.token, nil
	}
	var aud any = origin
	if len(h.AssertionAudience) == 1 {
		aud = h.AssertionAudience[0]
	} else if len(h.AssertionAudience) > 1 {
		aud = h.AssertionAudience
	}
	claims := map[string]any{"iss": origin, "aud": aud, "sub": id.id}
	for _, name := range []string{"type", "email", "name", "tid", "idp", "policy", "oid"} {
		if v := id.values[name]; v != "" {
			claims[name] = v
		}
	}
	for _, name := range []string{"roles", "groups"} {
		if v := claimValues(id.claims[name]); len(v) > 0 {
			claims[name] = slices.Clone(v)
		}
	}
	token, exp, err := h.assertions.Sign(r.Context(), claims)
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
		return h.fail(w, r, http.StatusNotFound, "Not available", "This site signs no identity assertions.", errNoAssertions)
	}
	jwks, err := h.assertions.JWKS(r.Context())
	if err != nil {
		return h.fail(w, r, http.StatusServiceUnavailable, "Unavailable", "The keys cannot be read right now.", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(int(time.Hour.Seconds())))
	w.Header().Set("Access-Control-Allow-Origin", "*")
	_, err = w.Write(jwks)
	return err
}
