package b2cauth

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/session"
)

// errSessionStore is a session kept in storage that storage could not
// give: an outage, not a sign-out.
var errSessionStore = errors.New("session storage unavailable")

// clearSession deletes the session cookie and its chunks.
func clearSession(w http.ResponseWriter, r *http.Request) {
	c := session.Cookie(r, sessionCookie)
	c.MaxAge = -1
	http.SetCookie(w, &c)
	session.DeleteChunks(w, r, c, 1)
}

// readSession returns the request's live session identity, or nil: a
// missing, tampered, truncated, foreign, expired or idle cookie is no
// session. revoked tells a session signed out elsewhere, whose cookie the
// caller may clear. It writes nothing (keepSession does); an error
// (errSessionStore) means the session is kept in storage that cannot be
// read now: the cookie stays, for when it can.
func (h *Handler) readSession(r *http.Request, now time.Time) (id *identity, revoked bool, err error) {
	chunks := session.ReadChunked(r, session.CookieName(r, sessionCookie))
	if !chunks.Present() {
		return nil, false, nil
	}
	id, cached := h.cache.GetChunked(&chunks, now)
	if !cached {
		value := chunks.Join()
		s, err := h.sessions.open(r.Context(), value)
		if s == nil {
			return nil, false, err
		}
		payload, err := s.Payload()
		if err != nil {
			return nil, false, nil
		}
		var ok bool
		if id, ok = h.identity(withUserInfo(payload, s.UserInfo)); !ok {
			return nil, false, nil
		}
		id.session, id.expires = s, time.Unix(s.Expires, 0)
		id.groupsUnknown = s.GroupsUnknown
		h.cache.PutCookie(value, id, id.expires, now)
	}
	s := id.session
	if now.Unix() >= s.Expires {
		return nil, false, nil
	}
	if h.signouts.Revoked(s.ID, id.userKey, id.values["sid"], s.Issued) || (id.userKey != id.id && h.signouts.UserRevoked(id.id, s.Issued)) {
		if ce := h.logger.Check(zap.InfoLevel, "signed-out session refused"); ce != nil {
			ce.Write(zap.String("user_id", id.id))
		}
		return nil, true, nil
	}
	if t := time.Duration(h.InactivityTimeout); t > 0 && now.Sub(time.Unix(s.Seen, 0)) > t {
		return nil, false, nil
	}
	return id, false, nil
}

// keepSession does what a live session needs on a request: notes its
// activity (inactivity_timeout, not on every request), and renews its
// tokens near their expiry. It returns the identity to go on with, nil
// when the session cannot be kept.
func (h *Handler) keepSession(w http.ResponseWriter, r *http.Request, id *identity, now time.Time) *identity {
	s := id.session
	if t := time.Duration(h.InactivityTimeout); t > 0 && now.Sub(time.Unix(s.Seen, 0)) > t/8 {
		if err := h.sessions.touch(w, r, s, now); err != nil {
			return nil
		}
	}
	if h.autoRefresh && s.RefreshToken != "" && nearExpiry(id, now) {
		return h.autoRenew(w, r, id, now)
	}
	return id
}

// authenticate finds the request's user: a bearer token, else the session.
// An error means a bearer token was presented and refused.
// now is the request's time.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request, now time.Time) (*identity, error) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		if scheme, token, ok := strings.Cut(auth, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return h.bearer(r, strings.TrimSpace(token), now)
		}
	}
	id, revoked, err := h.readSession(r, now)
	if revoked {
		clearSession(w, r)
	}
	if id == nil {
		return nil, err
	}
	return h.keepSession(w, r, id, now), nil
}
