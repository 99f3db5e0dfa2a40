package b2cauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/oidcprovider"
	"github.com/caddy-b2c/caddy-b2c/b2cauth/session"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// sessionKeeper seals, keeps and clears sessions: in the cookie, or, with
// session_store storage, as a record in Caddy's storage behind a small
// cookie. It owns the cookie key ring (shared with the pending sign-ins'
// and sign-outs' cookies), the records, and since when storage is the
// store; it puts the identities of the cookies it writes in the cache.
type sessionKeeper struct {
	codec     *session.Codec
	purpose   string         // binds a cookie to its provider and client
	store     *session.Store // session_store storage's records
	inStorage bool           // session_store storage
	since     time.Time      // when sessions moved to storage: whole-cookie sessions are accepted for a lifetime after
	lifetime  time.Duration  // session_lifetime
	tokens    []string       // session_tokens
	cache     *session.Cache[*identity]
	storage   certmagic.Storage
	now       func() time.Time
	logger    *zap.Logger
}

// encode turns a session into its cookie value: the session itself,
// or, for one kept in storage, its reference.
func (k *sessionKeeper) encode(s *session.Session) string {
	if s.Ref != nil {
		ref, _ := json.Marshal(s.Ref)
		return k.codec.Seal(append([]byte{session.Stored}, ref...), k.purpose)
	}
	return k.codec.Seal(session.Deflate(s), k.purpose)
}

// open reads a session cookie value, whatever session_store wrote
// it (so switching it signs nobody out): nil for anything tampered,
// foreign or malformed, and for a stored session whose record is gone;
// errSessionStore when storage cannot be read.
func (k *sessionKeeper) open(ctx context.Context, value string) (*session.Session, error) {
	plain, ok := k.codec.Open(value, k.purpose)
	if !ok || len(plain) == 0 {
		return nil, nil
	}
	if plain[0] != session.Stored {
		if k.inStorage && !k.now().Before(k.since.Add(k.lifetime)) {
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
	data, err := k.store.Get(ctx, ref.Secret, ref.Expires)
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

// start makes a session from a token response and its checked ID
// token's payload, keeping the tokens session_tokens names.
func (k *sessionKeeper) start(tr *oidcprovider.TokenResponse, policy string, payload []byte) *session.Session {
	now := k.now()
	s := &session.Session{
		ID: randomString(), Issued: now.UnixMilli(),
		IDToken: tr.IDToken, AccessToken: tr.AccessToken, RefreshToken: tr.RefreshToken, Policy: policy,
		Expires: now.Add(k.lifetime).Unix(), Seen: now.Unix(),
		IssuedIDToken: tr.IDToken,
	}
	if tr.AccessToken != "" {
		// Kept even when the token is not: renewal is timed by it.
		s.AccessExpiry = now.Add(time.Duration(tr.ExpiresIn) * time.Second).Unix()
	}
	if !k.keeps("id") {
		s.IDToken, s.Claims = "", payload
	}
	if !k.keeps("access") {
		s.AccessToken = ""
	}
	if !k.keeps("refresh") {
		s.RefreshToken = ""
	}
	return s
}

// keeps tells whether sessions keep a token: id, access or refresh.
func (k *sessionKeeper) keeps(name string) bool {
	return len(k.tokens) == 0 || slices.Contains(k.tokens, name)
}

// write keeps a new or renewed session: with session_store storage
// its record is written (a session read from a cookie moves there), then
// the cookie is set. The session's identity, when given, is cached for
// the new cookie, so that the next request reads nothing.
func (k *sessionKeeper) write(w http.ResponseWriter, r *http.Request, s *session.Session, id *identity) error {
	if k.inStorage {
		ref := session.Ref{Secret: session.NewSecret(), Expires: s.Expires}
		if s.Ref != nil {
			ref = *s.Ref
			ref.Gen++
		}
		ref.Seen = s.Seen
		if s.Ref == nil && id != nil {
			// A new session: within the user's bounds (session.Admit).
			if err := k.store.Admit(r.Context(), k.storedUser(id), ref.Secret, ref.Expires, k.now().Unix(), k.lifetime); err != nil {
				if errors.Is(err, session.ErrTooManySignIns) {
					return err
				}
				return fmt.Errorf("%w: %v", errSessionStore, err)
			}
		}
		s.Ref = &ref
		if err := k.store.Put(r.Context(), ref.Secret, ref.Expires, session.Deflate(s)); err != nil {
			return fmt.Errorf("%w: %v", errSessionStore, err)
		}
		go k.sweep(k.now().Unix())
	} else if s.Ref != nil {
		// Written under session_store storage, now kept in the cookie.
		moved := *s
		moved.Ref = nil
		k.drop(r.Context(), s)
		*s = moved
	}
	value := k.encode(s)
	if err := k.setCookie(w, r, s, value); err != nil {
		return err
	}
	if id != nil {
		id.session, id.expires, id.groupsUnknown = s, time.Unix(s.Expires, 0), s.GroupsUnknown
		k.cache.PutCookie(value, id, id.expires, k.now())
	}
	return nil
}

// setCookie sets the session cookie(s) alone, to its encoded value.
func (k *sessionKeeper) setCookie(w http.ResponseWriter, r *http.Request, s *session.Session, value string) error {
	c := session.Cookie(r, sessionCookie)
	c.Expires = time.Unix(s.Expires, 0)
	return session.WriteChunked(w, r, c, value)
}

// touch notes a session's activity: in its cookie, the only part
// that changes (a stored session's record is not written).
func (k *sessionKeeper) touch(w http.ResponseWriter, r *http.Request, s *session.Session, now time.Time) error {
	touched := *s
	touched.Seen = now.Unix()
	if s.Ref != nil {
		ref := *s.Ref
		ref.Seen = touched.Seen
		touched.Ref = &ref
	}
	return k.setCookie(w, r, &touched, k.encode(&touched))
}

// drop deletes a stored session's record (sign-out): copies of its
// cookie find nothing; instances that cached it honour the revocation.
func (k *sessionKeeper) drop(ctx context.Context, s *session.Session) {
	if s.Ref == nil {
		return
	}
	if err := k.store.Delete(ctx, s.Ref.Secret, s.Ref.Expires); err != nil {
		k.logger.Warn("session record not deleted; it goes when the session would have ended", zap.Error(err))
	}
}

// sweep deletes the records of ended sessions, at most once an
// hour (session.Store.Sweep).
func (k *sessionKeeper) sweep(now int64) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if n, err := k.store.Sweep(ctx, now); err != nil {
		k.logger.Warn("sweeping ended sessions from storage", zap.Int("deleted", n), zap.Error(err))
	}
}

// noteStore records, for session_store storage, since when it is
// the store (kept if already recorded), and for cookie, that it is not.
func (k *sessionKeeper) noteStore(ctx context.Context, app string) error {
	key := storedSinceKey(app)
	if !k.inStorage {
		if err := k.storage.Delete(ctx, key); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	data, err := k.storage.Load(ctx, key)
	if err == nil {
		if since, err := strconv.ParseInt(string(data), 10, 64); err == nil {
			k.since = time.Unix(since, 0)
			return nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	k.since = k.now()
	return k.storage.Store(ctx, key, []byte(strconv.FormatInt(k.since.Unix(), 10)))
}

// storedUser names a user's index of stored sessions: a hash of the app
// and the user's ID, which storage shows instead of either.
func (k *sessionKeeper) storedUser(id *identity) string {
	sum := sha256.Sum256([]byte(k.purpose + "|" + id.id))
	return hex.EncodeToString(sum[:16])
}

// storedSinceKey is where Caddy's storage keeps when an app's sessions
// moved to storage (Unix seconds), which bounds how long cookies holding a
// whole session are still accepted.
func storedSinceKey(app string) string { return "b2c_auth/session_store_since/" + app }
