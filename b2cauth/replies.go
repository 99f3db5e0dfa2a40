package b2cauth

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/oidcprovider"
	"github.com/caddy-b2c/caddy-b2c/b2cauth/session"
)

// Error replies: every concern answers a failure through these, so that a
// site's handle_errors routes see them, API clients get JSON and browsers
// a page.

// fail answers an error: through the site's handle_errors routes when it
// has any, else with a page of our own (JSON for clients that do not accept
// HTML).
func fail(w http.ResponseWriter, r *http.Request, status int, title, message string, err error) error {
	if srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok && srv.Errors != nil && len(srv.Errors.Routes) > 0 {
		return caddyhttp.Error(status, err)
	}
	if !strings.Contains(r.Header.Get("Accept"), "text/html") {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		return json.NewEncoder(w).Encode(map[string]any{"status": status, "error": title, "message": message})
	}
	return renderPage(w, status, pageData{Title: title, Message: message, Link: "/.auth/login", LinkText: "Sign in again"})
}

// sessionStoreDown answers 503 while the storage that keeps the sessions
// (session_store storage) cannot be read: the cookie is kept, for when it
// can.
func sessionStoreDown(logger *zap.Logger, w http.ResponseWriter, r *http.Request, err error) error {
	countRequest(outcome503)
	logger.Error("sessions cannot be read from storage", zap.Error(err))
	w.Header().Set("Retry-After", "5")
	return fail(w, r, http.StatusServiceUnavailable, "Sessions unavailable", "This site cannot read its sessions right now. Try again in a moment.", err)
}

// sessionNotKept answers a session that could not be kept: 503 when its
// storage failed, else 502 (it is too large for cookies).
func sessionNotKept(logger *zap.Logger, w http.ResponseWriter, r *http.Request, title string, err error) error {
	if errors.Is(err, session.ErrTooManySignIns) {
		countRequest(outcome429)
		logger.Warn("sign-in refused: too many sign-ins of this user in the last minute", zap.Error(err))
		w.Header().Set("Retry-After", "60")
		return fail(w, r, http.StatusTooManyRequests, title, "Too many sign-ins in a short time. Wait a minute, then try again.", err)
	}
	if errors.Is(err, errSessionStore) {
		countRequest(outcome503)
		logger.Error("session not written to storage", zap.Error(err))
		w.Header().Set("Retry-After", "5")
		return fail(w, r, http.StatusServiceUnavailable, title, "This site cannot keep sessions right now. Try again in a moment.", err)
	}
	return fail(w, r, http.StatusBadGateway, title, "The session is too large to keep in cookies.", err)
}

// unavailable answers 503 while the provider cannot be reached, and 500
// when it answers but not for this configuration.
func unavailable(logger *zap.Logger, w http.ResponseWriter, r *http.Request, err error) error {
	var mc *oidcprovider.MisconfiguredError
	if errors.As(err, &mc) {
		// Not an outage: the site's configuration must change. The user
		// gets no detail; the log says what and where.
		countRequest(outcome500)
		logger.Error("identity provider misconfigured: fix the tenant, authority, issuer or policy", zap.Error(err))
		return fail(w, r, http.StatusInternalServerError, "Sign-in misconfigured", "This site's sign-in is not set up correctly. Its administrators have been told in its log.", err)
	}
	countRequest(outcome503)
	logger.Error("identity provider unavailable", zap.Error(err))
	retry := 5 * time.Second
	var ue *oidcprovider.UnavailableError
	if errors.As(err, &ue) {
		retry = max(time.Until(ue.RetryAt), time.Second)
	}
	w.Header().Set("Retry-After", strconv.Itoa(int((retry+time.Second-1)/time.Second)))
	return fail(w, r, http.StatusServiceUnavailable, "Sign-in unavailable", "The identity provider cannot be reached right now. Try again in a moment.", err)
}
