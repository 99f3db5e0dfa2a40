package b2cauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/session"
)

// errSessionStore is a session kept in storage that storage could not
// give: an outage, not a sign-out.
var errSessionStore = errors.New("session storage unavailable")

// encodeSession turns a session into its cookie value: the session itself,
// or, for one kept in storage, its reference.
func (h *Handler) encodeSession(s *session.Session) string {
	if s.Ref != nil {
		ref, _ := json.Marshal(s.Ref)
		return h.codec.Seal(append([]byte{session.Stored}, ref...), h.sessionPurpose)
	}
	return h.codec.Seal(session.Deflate(s), h.sessionPurpose)
}

// openSession reads a session cookie value, whatever session_store wrote
// it (so switching it signs nobody out): nil for anything tampered,
// foreign or malformed, and for a stored session whose record is gone;
// errSessionStore when storage cannot be read.
func (h *Handler) openSession(ctx context.Context, value string) (*session.Session, error) {
	plain, ok := h.codec.Open(value, h.sessionPurpose)
	if !ok || len(plain) == 0 {
		return nil, nil
	}
	if plain[0] != session.Stored {
		if h.SessionStore == "storage" && !h.now().Before(h.storedSince.Add(time.Duration(h.SessionLifetime))) {
			// Whoever can read storage (and the cookie key kept there)
			// could seal such a cookie: past the sessions made before the
			// switch to storage, none is accepted.
			return nil, nil
		}
		return session.Inflate(plain), nil
	}
	var ref session.Ref
	if json.Unmarshal(plain[1:], &ref) != nil || len(ref.Secret) != session.SecretSize {
		return nil, nil
	}
	data, err := h.sessions.Get(ctx, ref.Secret, ref.Expires)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, session.ErrUnreadable):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("%w: %v", errSessionStore, err)
	}
	s := session.Inflate(data)
	if s == nil {
		return nil, nil
	}
	s.Ref, s.Seen = &ref, ref.Seen
	return s, nil
}

// newSession makes a session from a token response and its checked ID
// token's payload, keeping the tokens session_tokens names.
func (h *Handler) newSession(tr *tokenResponse, policy string, payload []byte) *session.Session {
	now := h.now()
	s := &session.Session{
		ID: randomString(), Issued: now.UnixMilli(),
		IDToken: tr.IDToken, AccessToken: tr.AccessToken, RefreshToken: tr.RefreshToken, Policy: policy,
		Expires: now.Add(time.Duration(h.SessionLifetime)).Unix(), Seen: now.Unix(),
		IssuedIDToken: tr.IDToken,
	}
	if tr.AccessToken != "" {
		// Kept even when the token is not: renewal is timed by it.
		s.AccessExpiry = now.Add(time.Duration(tr.ExpiresIn) * time.Second).Unix()
	}
	if !h.keepsToken("id") {
		s.IDToken, s.Claims = "", payload
	}
	if !h.keepsToken("access") {
		s.AccessToken = ""
	}
	if !h.keepsToken("refresh") {
		s.RefreshToken = ""
	}
	return s
}

// keepsToken tells whether sessions keep a token: id, access or refresh.
func (h *Handler) keepsToken(name string) bool {
	return len(h.SessionTokens) == 0 || slices.Contains(h.SessionTokens, name)
}

// writeSession keeps a new or renewed session: with session_store storage
// its record is written (a session read from a cookie moves there), then
// the cookie is set. The session's identity, when given, is cached for
// the new cookie, so that the next request reads nothing.
func (h *Handler) writeSession(w http.ResponseWriter, r *http.Request, s *session.Session, id *identity) error {
	if h.SessionStore == "storage" {
		ref := session.Ref{Secret: session.NewSecret(), Expires: s.Expires}
		if s.Ref != nil {
			ref = *s.Ref
			ref.Gen++
		}
		ref.Seen = s.Seen
		if s.Ref == nil && id != nil {
			// A new session: within the user's bounds (session.Admit).
			if err := h.sessions.Admit(r.Context(), h.storedUser(id), ref.Secret, ref.Expires, h.now().Unix(), time.Duration(h.SessionLifetime)); err != nil {
				if errors.Is(err, session.ErrTooManySignIns) {
					return err
				}
				return fmt.Errorf("%w: %v", errSessionStore, err)
			}
		}
		s.Ref = &ref
		if err := h.sessions.Put(r.Context(), ref.Secret, ref.Expires, session.Deflate(s)); err != nil {
			return fmt.Errorf("%w: %v", errSessionStore, err)
		}
		go h.sweepSessions(h.now().Unix())
	} else if s.Ref != nil {
		// Written under session_store storage, now kept in the cookie.
		moved := *s
		moved.Ref = nil
		h.dropSession(r.Context(), s)
		*s = moved
	}
	value := h.encodeSession(s)
	if err := h.setSessionCookie(w, r, s, value); err != nil {
		return err
	}
	if id != nil {
		id.session, id.expires, id.groupsUnknown = s, time.Unix(s.Expires, 0), s.GroupsUnknown
		h.cache.putCookie(value, id, h.now())
	}
	return nil
}

// setSessionCookie sets the session cookie(s) alone, to its encoded value.
func (h *Handler) setSessionCookie(w http.ResponseWriter, r *http.Request, s *session.Session, value string) error {
	c := session.Cookie(r, sessionCookie)
	c.Expires = time.Unix(s.Expires, 0)
	return session.WriteChunked(w, r, c, value)
}

// touchSession notes a session's activity: in its cookie, the only part
// that changes (a stored session's record is not written).
func (h *Handler) touchSession(w http.ResponseWriter, r *http.Request, s *session.Session, now time.Time) error {
	touched := *s
	touched.Seen = now.Unix()
	if s.Ref != nil {
		ref := *s.Ref
		ref.Seen = touched.Seen
		touched.Ref = &ref
	}
	return h.setSessionCookie(w, r, &touched, h.encodeSession(&touched))
}

// dropSession deletes a stored session's record (sign-out): copies of its
// cookie find nothing; instances that cached it honour the revocation.
func (h *Handler) dropSession(ctx context.Context, s *session.Session) {
	if s.Ref == nil {
		return
	}
	if err := h.sessions.Delete(ctx, s.Ref.Secret, s.Ref.Expires); err != nil {
		h.logger.Warn("session record not deleted; it goes when the session would have ended", zap.Error(err))
	}
}

// sweepSessions deletes the records of ended sessions, at most once an
// hour (session.Store.Sweep).
func (h *Handler) sweepSessions(now int64) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if n, err := h.sessions.Sweep(ctx, now); err != nil {
		h.logger.Warn("sweeping ended sessions from storage", zap.Int("deleted", n), zap.Error(err))
	}
}

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
func (h *Handler) readSession(r *http.Request) (id *identity, revoked bool, err error) {
	chunks := session.ReadChunked(r, session.Cookie(r, sessionCookie).Name)
	if !chunks.Present() {
		return nil, false, nil
	}
	now := h.now()
	id = h.cache.getChunked(&chunks, now)
	if id == nil {
		value := chunks.Join()
		s, err := h.openSession(r.Context(), value)
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
		h.cache.putCookie(value, id, now)
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
func (h *Handler) keepSession(w http.ResponseWriter, r *http.Request, id *identity) *identity {
	now, s := h.now(), id.session
	if t := time.Duration(h.InactivityTimeout); t > 0 && now.Sub(time.Unix(s.Seen, 0)) > t/8 {
		if err := h.touchSession(w, r, s, now); err != nil {
			return nil
		}
	}
	if h.autoRefresh && s.RefreshToken != "" && h.nearExpiry(id, now) {
		return h.autoRenew(w, r, id)
	}
	return id
}

// authenticate finds the request's user: a bearer token, else the session.
// An error means a bearer token was presented and refused.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request) (*identity, error) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		if scheme, token, ok := strings.Cut(auth, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return h.bearer(r, strings.TrimSpace(token))
		}
	}
	id, revoked, err := h.readSession(r)
	if revoked {
		clearSession(w, r)
	}
	if id == nil {
		return nil, err
	}
	return h.keepSession(w, r, id), nil
}
