package b2cauth

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// The request path: the endpoints, then who the user is, whether the
// rules admit them, and what the next handler gets.

// ServeHTTP answers the /.auth endpoints and the callback, and otherwise
// lets through only signed-in users that the rules admit.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	st := stateOf(r)
	// Client-sent identity headers go, once per request: a later b2c_auth
	// in the chain must not remove what an earlier one set.
	if !st.headersStripped {
		stripIdentityHeaders(r.Header)
		st.headersStripped = true
	}
	if h.assertions != nil && st.stripOnce(h.assertions.header) {
		stripHeader(r.Header, h.assertions.header)
	}
	restoreCookies(r, st)

	switch p := r.URL.Path; {
	case p == h.RedirectPath && isEndSessionReturn(r):
		// The redirect path is also where end_session sends the browser
		// back after a sign-out, so that an app registration needs one
		// redirect URI.
		return h.logoutReturn(w, r, r.URL.Query().Get("state"))
	case p == h.RedirectPath:
		return h.callback(w, r)
	case strings.HasPrefix(p, "/.auth/"):
		if handled, err := h.endpoint(w, r); handled {
			return err
		}
	}

	if h.CORSPreflight == "pass" && isPreflight(r) {
		// Browsers never send credentials on a CORS preflight: the site
		// chose to let it reach the app (or a header directive), so that
		// the real request, with its token, can follow. It carries nothing
		// the app could act on.
		r.Body, r.ContentLength = http.NoBody, 0
		for _, name := range methodOverrideHeaders {
			r.Header.Del(name)
		}
		return passAnonymous(w, r, st, next)
	}

	protected := true
	if h.protect != nil {
		ok, err := h.protect.MatchWithError(r)
		if err != nil {
			return caddyhttp.Error(http.StatusInternalServerError, err)
		}
		protected = ok
	}

	// The request's time: when Caddy began it, so that the clock is not
	// read again (the test clock where there is none).
	now := st.started
	if now.IsZero() {
		now = h.now()
	}
	id, err := h.requestIdentity(w, r, st, now)
	if err != nil && protected {
		return h.bearerFailure(w, r, err)
	}
	if id == nil {
		if !protected || h.Unauthenticated == "allow" {
			return passAnonymous(w, r, st, next)
		}
		if h.Unauthenticated != "401" {
			if post, ok := h.preservablePost(w, r); ok {
				return h.startFlow(w, r, flow{Policy: h.Policy, Return: safeReturnURL(r.URL.RequestURI()), Post: post}, nil)
			}
		}
		again, _ := caddyhttp.GetVar(r.Context(), reauthVar).(reauth)
		if h.Unauthenticated == "401" || (h.Unauthenticated == "" && !isNavigation(r)) {
			countRequest(outcome401)
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm(r)+`"`)
			return fail(w, r, http.StatusUnauthorized, "Sign-in required", "This resource needs a signed-in user.", errors.New("not signed in"))
		}
		if again.blocked {
			countRequest(outcome403)
			return renderPage(w, http.StatusForbidden, accessBlockedPage)
		}
		var hints url.Values // a re-authentication names the account
		if again.loginHint != "" {
			hints = url.Values{"login_hint": {again.loginHint}}
		}
		return h.startFlow(w, r, flow{Policy: h.Policy, Return: safeReturnURL(r.URL.RequestURI()), Claims: again.claims}, hints)
	}

	if protected && h.stepUp.asked() {
		if lacking := h.stepUp.lacks(id, now); lacking != "" {
			if id.session == nil {
				return h.bearerStepUp(w, r, id, lacking)
			}
			return h.stepUpSession(w, r, id, lacking)
		}
	}
	if protected && id.groupsUnknown && namesGroups(h.Allow, h.Deny) {
		if id = h.recoverGroups(w, r, id); id == nil {
			return refuseUnknownGroups(w, r)
		}
	}
	if protected && !permitted(h.Allow, h.Deny, id.claims) {
		countRequest(outcome403)
		h.logger.Info("user refused by rules", zap.String("user_id", id.id), zap.String("path", r.URL.Path))
		return fail(w, r, http.StatusForbidden, "Access denied", "You are signed in, but this resource is not for your account.", errors.New("refused by allow/deny rules"))
	}
	if id.session != nil {
		countRequest(outcomeSession)
	} else {
		countRequest(outcomeBearer)
	}
	if h.assertions != nil {
		if err := h.assertions.add(r, id); err != nil {
			h.logger.Error("identity assertion not signed", zap.Error(err))
			return fail(w, r, http.StatusServiceUnavailable, "Unavailable", "This site cannot vouch for your identity right now. Try again in a moment.", err)
		}
	}
	id.setPlaceholders(r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer))
	hideOwnCookies(r, st)
	if h.EasyAuthHeaders {
		// (Caddy's access log records a copy of the request made before the
		// handlers, so these headers never reach it.)
		id.setEasyAuthHeaders(r.Header)
		setTokenHeaders(id, r.Header)
	}
	return next.ServeHTTP(w, r)
}

// requestIdentity is the request's user: the session identity an earlier
// b2c_auth block of the same provider and client found (perhaps renewed),
// else a bearer token's or the session cookie's.
func (h *Handler) requestIdentity(w http.ResponseWriter, r *http.Request, st *requestState, now time.Time) (*identity, error) {
	if id := st.session(h.purpose); id != nil && r.Header.Get("Authorization") == "" {
		return id, nil
	}
	id, err := h.authenticate(w, r, now)
	if id != nil && id.session != nil {
		st.setSession(h.purpose, id)
	}
	return id, err
}

// realm names the site in WWW-Authenticate.
func realm(r *http.Request) string {
	return strings.NewReplacer(`"`, "", `\`, "").Replace(r.Host)
}

// passAnonymous lets a request without a user through: its user
// placeholders empty, the handler's cookies hidden.
func passAnonymous(w http.ResponseWriter, r *http.Request, st *requestState, next caddyhttp.Handler) error {
	countRequest(outcomeAnonymous)
	anonymousPlaceholders(r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer))
	hideOwnCookies(r, st)
	return next.ServeHTTP(w, r)
}

// isPreflight tells a CORS preflight: OPTIONS with Origin and
// Access-Control-Request-Method, and no credentials and no body (a
// browser's preflight has neither).
func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" &&
		r.Header.Get("Access-Control-Request-Method") != "" && r.Header.Get("Authorization") == "" &&
		r.ContentLength == 0 && len(r.TransferEncoding) == 0
}

// methodOverrideHeaders are the headers by which frameworks let a request
// claim another method; a preflight passed unauthenticated loses them.
var methodOverrideHeaders = []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"}

// isNavigation tells a browser navigation from an API or XHR request:
// only a GET or HEAD that accepts HTML, is not marked as XHR and, when the
// browser says, is a navigation, may be redirected to sign in.
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if r.Header.Get("X-Requested-With") != "" {
		return false
	}
	if m := r.Header.Get("Sec-Fetch-Mode"); m != "" && m != "navigate" {
		return false
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// isEndSessionReturn tells the provider's return from end_session (a GET
// with neither a code nor an error) from an answer to a sign-in.
func isEndSessionReturn(r *http.Request) bool {
	q := r.URL.Query()
	return r.Method == http.MethodGet && !q.Has("code") && !q.Has("error")
}
