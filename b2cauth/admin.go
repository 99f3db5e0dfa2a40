package b2cauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/signouts"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI is b2c_auth's route on Caddy's admin API: POST
// /b2c_auth/revoke {"user": "<id>"} signs a user out of every instance that
// shares the running config's storage (every session and bearer token
// issued until now), within revocation_sync. `caddy b2c revoke` calls it.
type adminAPI struct {
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "admin.api.b2c_auth", New: func() caddy.Module { return new(adminAPI) }}
}

// Provision keeps the logger.
func (a *adminAPI) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	return nil
}

// Routes are the admin API's routes of b2c_auth.
func (a *adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/b2c_auth/revoke", Handler: caddy.AdminHandlerFunc(a.revoke)}}
}

// RevokeRequest is what POST /b2c_auth/revoke takes: a user, or one
// session.
type RevokeRequest struct {
	User    string `json:"user,omitempty"`    // what {http.auth.user.id} shows: the oid, else the sub
	Session string `json:"session,omitempty"` // what {http.auth.b2c.session_id} shows
}

// RevokeResponse is what it answers.
type RevokeResponse struct {
	User    string    `json:"user,omitempty"`
	Session string    `json:"session,omitempty"`
	Before  time.Time `json:"before"`  // sessions and bearer tokens issued before this are refused
	Expires time.Time `json:"expires"` // when the record goes: every session it covers has ended
}

func (a *adminAPI) revoke(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("POST a JSON {\"user\": \"<id>\"}")}
	}
	var req RevokeRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10)).Decode(&req); err != nil || (req.User == "") == (req.Session == "") || len(req.User) > 256 || len(req.Session) > 256 {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New("want a JSON {\"user\": \"<id>\"} (the oid, else the sub, as {http.auth.user.id} shows it) or {\"session\": \"<id>\"} ({http.auth.b2c.session_id})")}
	}
	storage := caddy.ActiveContext().Storage()
	if storage == nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: errors.New("no config is running")}
	}
	now, lifetime := time.Now(), liveSessionLifetime()
	res := RevokeResponse{User: req.User, Session: req.Session, Before: now, Expires: now.Add(lifetime)}
	entry := signouts.UserSignOut(req.User, now, lifetime)
	if req.Session != "" {
		entry = signouts.Entry{Kind: signouts.KindSession, Value: req.Session, Expires: res.Expires.Unix()}
	}
	if err := signouts.New(storage, signouts.DefaultSync, a.logger).Add(r.Context(), entry); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: fmt.Errorf("recording the sign-out in storage: %v", err)}
	}
	countRevocation("operator")
	a.logger.Info("signed out by an operator", zap.String("user_id", req.User), zap.Bool("one_session", req.Session != ""))
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(res)
}

// sessionLifetimes are the session_lifetime of the provisioned handlers:
// an operator's sign-out must outlive every session it covers.
var sessionLifetimes sync.Map // *Handler → time.Duration

// liveSessionLifetime is the longest session_lifetime of the handlers.
func liveSessionLifetime() time.Duration {
	longest := defaultSessionLifetime
	sessionLifetimes.Range(func(_, v any) bool {
		longest = max(longest, v.(time.Duration))
		return true
	})
	return longest
}

// Interface guards
var (
	_ caddy.AdminRouter = (*adminAPI)(nil)
	_ caddy.Provisioner = (*adminAPI)(nil)
)
