package b2cauth

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/sessionstore"
)

// session is a signed-in user's session: what the session cookie holds
// (session_store cookie), or what its record in Caddy's storage holds
// (session_store storage, see sessionstore). session_tokens says which
// tokens it keeps.
type session struct {
	ID      string `json:"id"` // random: what a sign-out revokes
	Issued  int64  `json:"is"` // sign-in time, Unix ms: "everywhere" revokes sessions issued before it
	IDToken string `json:"it,omitempty"`
	// The ID token's payload, kept instead of the token when session_tokens
	// leaves `id` out: the claims, without the header and signature.
	Claims       json.RawMessage `json:"c,omitempty"`
	AccessToken  string          `json:"at,omitempty"` // when the provider gave one
	AccessExpiry int64           `json:"ae,omitempty"`
	RefreshToken string          `json:"rt,omitempty"`
	Policy       string          `json:"p,omitempty"` // the policy that issued the tokens
	// Claims that only the UserInfo endpoint gave (the ID token lacked them).
	UserInfo map[string]any `json:"u,omitempty"`
	Expires  int64          `json:"e"`
	Seen     int64          `json:"s"` // last activity, for inactivity_timeout
	// Microsoft Graph could not give the groups (rules that need them
	// refuse); the groups it gave are in UserInfo.
	GroupsUnknown bool `json:"gu,omitempty"`

	// ref is set when the session lives in storage: its cookie's contents.
	ref *sessionRef
	// issuedIDToken is the ID token the provider just gave, kept or not
	// (for a sign-out hint); not sealed anywhere.
	issuedIDToken string
}

// payload is the ID token's payload: the claims.
func (s *session) payload() ([]byte, error) {
	if len(s.Claims) > 0 {
		return s.Claims, nil
	}
	return jwtPayload(s.IDToken)
}

// A session is sealed as JSON compressed with DEFLATE, after a marker
// byte: the tokens' base64 JSON compresses well, and a smaller cookie
// needs fewer chunks (and bytes on every request). A session kept in
// storage has a cookie of its own kind: the storedSession marker, then its
// sessionRef as JSON.
const (
	deflatedSession = 0x01
	storedSession   = 0x02
	maxSessionJSON  = 64 << 10 // what a session may inflate to
)

// sessionRef is what the cookie of a session kept in storage holds: the
// secret that names and opens its record, when it ends (where the record
// is filed), its last activity, and how many times it was renewed (so the
// cookie changes with the tokens, and caches keyed by it load them anew).
type sessionRef struct {
	Secret  []byte `json:"k"`
	Expires int64  `json:"e"`
	Seen    int64  `json:"s"`
	Gen     int    `json:"g,omitempty"`
}

// errSessionStore is a session kept in storage that storage could not
// give: an outage, not a sign-out.
var errSessionStore = errors.New("session storage unavailable")

// deflate compresses a session's JSON, after the deflatedSession marker.
func deflate(s *session) []byte {
	data, _ := json.Marshal(s)
	var buf bytes.Buffer
	buf.WriteByte(deflatedSession)
	zw, _ := flate.NewWriter(&buf, flate.BestCompression)
	_, _ = zw.Write(data)
	_ = zw.Close()
	return buf.Bytes()
}

// inflate reverses deflate; nil for anything that is not a session.
func inflate(plain []byte) *session {
	if len(plain) == 0 || plain[0] != deflatedSession {
		return nil
	}
	data, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(plain[1:])), maxSessionJSON+1))
	if err != nil || len(data) > maxSessionJSON {
		return nil
	}
	var s session
	if json.Unmarshal(data, &s) != nil || (s.IDToken == "" && len(s.Claims) == 0) || s.ID == "" {
		return nil
	}
	return &s
}

// encodeSession turns a session into its cookie value: the session itself,
// or, for one kept in storage, its reference.
func (h *Handler) encodeSession(s *session) string {
	if s.ref != nil {
		ref, _ := json.Marshal(s.ref)
		return h.codec.seal(append([]byte{storedSession}, ref...), h.sessionPurpose)
	}
	return h.codec.seal(deflate(s), h.sessionPurpose)
}

// openSession reads a session cookie value, whatever session_store wrote
// it (so switching it signs nobody out): nil for anything tampered,
// foreign or malformed, and for a stored session whose record is gone;
// errSessionStore when storage cannot be read.
func (h *Handler) openSession(ctx context.Context, value string) (*session, error) {
	plain, ok := h.codec.open(value, h.sessionPurpose)
	if !ok || len(plain) == 0 {
		return nil, nil
	}
	if plain[0] != storedSession {
		if h.SessionStore == "storage" && !h.now().Before(h.storedSince.Add(time.Duration(h.SessionLifetime))) {
			// Whoever can read storage (and the cookie key kept there)
			// could seal such a cookie: past the sessions made before the
			// switch to storage, none is accepted.
			return nil, nil
		}
		return inflate(plain), nil
	}
	var ref sessionRef
	if json.Unmarshal(plain[1:], &ref) != nil || len(ref.Secret) != sessionstore.SecretSize {
		return nil, nil
	}
	data, err := h.sessions.Get(ctx, ref.Secret, ref.Expires)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, sessionstore.ErrUnreadable):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("%w: %v", errSessionStore, err)
	}
	s := inflate(data)
	if s == nil {
		return nil, nil
	}
	s.ref, s.Seen = &ref, ref.Seen
	return s, nil
}

// newSession makes a session from a token response and its checked ID
// token's payload, keeping the tokens session_tokens names.
func (h *Handler) newSession(tr *tokenResponse, policy string, payload []byte) *session {
	now := h.now()
	s := &session{
		ID: randomString(), Issued: now.UnixMilli(),
		IDToken: tr.IDToken, AccessToken: tr.AccessToken, RefreshToken: tr.RefreshToken, Policy: policy,
		Expires: now.Add(time.Duration(h.SessionLifetime)).Unix(), Seen: now.Unix(),
		issuedIDToken: tr.IDToken,
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
func (h *Handler) writeSession(w http.ResponseWriter, r *http.Request, s *session, id *identity) error {
	if h.SessionStore == "storage" {
		ref := sessionRef{Secret: sessionstore.NewSecret(), Expires: s.Expires}
		if s.ref != nil {
			ref = *s.ref
			ref.Gen++
		}
		ref.Seen = s.Seen
		if s.ref == nil && id != nil {
			// A new session: within the user's bounds (sessionstore.Admit).
			if err := h.sessions.Admit(r.Context(), h.storedUser(id), ref.Secret, ref.Expires, h.now().Unix(), time.Duration(h.SessionLifetime)); err != nil {
				if errors.Is(err, sessionstore.ErrTooManySignIns) {
					return err
				}
				return fmt.Errorf("%w: %v", errSessionStore, err)
			}
		}
		s.ref = &ref
		if err := h.sessions.Put(r.Context(), ref.Secret, ref.Expires, deflate(s)); err != nil {
			return fmt.Errorf("%w: %v", errSessionStore, err)
		}
		go h.sweepSessions(h.now().Unix())
	} else if s.ref != nil {
		// Written under session_store storage, now kept in the cookie.
		moved := *s
		moved.ref = nil
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
func (h *Handler) setSessionCookie(w http.ResponseWriter, r *http.Request, s *session, value string) error {
	c := cookie(r, sessionCookie)
	c.Expires = time.Unix(s.Expires, 0)
	return writeChunked(w, r, c, value)
}

// touchSession notes a session's activity: in its cookie, the only part
// that changes (a stored session's record is not written).
func (h *Handler) touchSession(w http.ResponseWriter, r *http.Request, s *session, now time.Time) error {
	touched := *s
	touched.Seen = now.Unix()
	if s.ref != nil {
		ref := *s.ref
		ref.Seen = touched.Seen
		touched.ref = &ref
	}
	return h.setSessionCookie(w, r, &touched, h.encodeSession(&touched))
}

// dropSession deletes a stored session's record (sign-out): copies of its
// cookie find nothing; instances that cached it honour the revocation.
func (h *Handler) dropSession(ctx context.Context, s *session) {
	if s.ref == nil {
		return
	}
	if err := h.sessions.Delete(ctx, s.ref.Secret, s.ref.Expires); err != nil {
		h.logger.Warn("session record not deleted; it goes when the session would have ended", zap.Error(err))
	}
}

// sweepSessions deletes the records of ended sessions, at most once an
// hour (sessionstore.Store.Sweep).
func (h *Handler) sweepSessions(now int64) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if n, err := h.sessions.Sweep(ctx, now); err != nil {
		h.logger.Warn("sweeping ended sessions from storage", zap.Int("deleted", n), zap.Error(err))
	}
}

// clearSession deletes the session cookie and its chunks.
func clearSession(w http.ResponseWriter, r *http.Request) {
	c := cookie(r, sessionCookie)
	c.MaxAge = -1
	http.SetCookie(w, &c)
	deleteChunks(w, r, c, 1)
}

// readSession returns the request's session identity, or nil: a missing,
// tampered, truncated, foreign or expired cookie is no session. An error
// (errSessionStore) means the session is kept in storage that cannot be
// read now: the cookie stays, for when it can.
func (h *Handler) readSession(w http.ResponseWriter, r *http.Request) (*identity, error) {
	chunks := readChunked(r, cookie(r, sessionCookie).Name)
	if chunks.n == 0 {
		return nil, nil
	}
	now := h.now()
	id := h.cache.getChunked(&chunks, now)
	if id == nil {
		value := chunks.join()
		s, err := h.openSession(r.Context(), value)
		if s == nil {
			return nil, err
		}
		payload, err := s.payload()
		if err != nil {
			return nil, nil
		}
		var ok bool
		if id, ok = h.identity(withUserInfo(payload, s.UserInfo)); !ok {
			return nil, nil
		}
		id.session, id.expires = s, time.Unix(s.Expires, 0)
		id.groupsUnknown = s.GroupsUnknown
		h.cache.putCookie(value, id, h.now())
	}
	s := id.session
	if now.Unix() >= s.Expires {
		return nil, nil
	}
	if h.signouts.Revoked(s.ID, id.userKey, id.values["sid"], s.Issued) || (id.userKey != id.id && h.signouts.UserRevoked(id.id, s.Issued)) {
		if ce := h.logger.Check(zap.InfoLevel, "signed-out session refused"); ce != nil {
			ce.Write(zap.String("user_id", id.id))
		}
		if w != nil {
			clearSession(w, r)
		}
		return nil, nil
	}
	if t := time.Duration(h.InactivityTimeout); t > 0 {
		idle := now.Sub(time.Unix(s.Seen, 0))
		if idle > t {
			return nil, nil
		}
		if idle > t/8 && w != nil { // note the activity, not on every request
			if err := h.touchSession(w, r, s, now); err != nil {
				return nil, nil
			}
		}
	}
	if h.autoRefresh && w != nil && s.RefreshToken != "" && h.nearExpiry(id, now) {
		return h.autoRenew(w, r, id), nil
	}
	return id, nil
}

// jwtPayload decodes a JWT's payload without checking it: only for tokens
// this handler checked before sealing them into the session.
func jwtPayload(token string) ([]byte, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a JWT")
	}
	return base64.RawURLEncoding.DecodeString(parts[1])
}

// authenticate finds the request's user: a bearer token, else the session.
// An error means a bearer token was presented and refused.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request) (*identity, error) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		if scheme, token, ok := strings.Cut(auth, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return h.bearer(r, strings.TrimSpace(token))
		}
	}
	return h.readSession(w, r)
}
