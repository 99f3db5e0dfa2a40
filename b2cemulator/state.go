package b2cemulator

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"github.com/go-jose/go-jose/v4"
)

// tenants holds each configuration's tenant state across config reloads.
var tenants = caddy.NewUsagePool()

// tenantState is what a tenant remembers: its signing keys, its users
// (including those who signed up), and the codes and refresh tokens it
// has issued.
type tenantState struct {
	mu       sync.Mutex
	keys     []signingKey // the last one signs
	users    map[string]*User
	codes    map[string]*grant
	refresh  map[string]*grant
	sessions map[string]*ssoSession // single sign-on sessions by sid
	verify   verifications          // email verification codes and the mailbox
	adminKey string                 // the default admin_key, made once per tenant
	graph429 int                    // Graph requests still to answer 429 (graph_throttle)
	ssoKey   []byte
	storage  certmagic.Storage
	storeKey string
	persist  bool
	// offset is how far the tenant's clock runs ahead of the machine's:
	// POST …/emulator/clock moves it, so that a test (or a developer)
	// sees codes, sessions and tokens expire without waiting.
	offset atomic.Int64
}

// now is the tenant's time: the machine's, moved by the clock endpoint.
// Every decision on time in the emulator takes it.
func (s *tenantState) now() time.Time {
	return time.Now().Add(time.Duration(s.offset.Load()))
}

// signingKey is an RSA key with its B2C-style key ID.
type signingKey struct {
	kid string
	nbf int64
	key *rsa.PrivateKey
}

// grant is what a code or a refresh token stands for.
type grant struct {
	clientID        string
	redirectURI     string
	challenge       string
	challengeMethod string
	policy          string
	nonce           string
	email           string
	sid             string // the single sign-on session
	scopes          []string
	authTime        time.Time
	acrs            []string  // the authentication contexts the sign-in satisfied
	capabilities    []string  // the client's capabilities (xms_cc), for its access tokens
	issued          time.Time // when the code was: the start of its refresh tokens' sliding window
	expires         time.Time
}

func newTenantState(ctx caddy.Context, e *Emulator) (*tenantState, error) {
	s := &tenantState{
		adminKey: base64.RawURLEncoding.EncodeToString(randomBytes(24)),
		graph429: e.GraphThrottle,
		users:    map[string]*User{},
		codes:    map[string]*grant{},
		refresh:  map[string]*grant{},
		sessions: map[string]*ssoSession{},
		ssoKey:   make([]byte, 32),
		storeKey: "b2c_emulator/" + e.Tenant + "/signing_keys.json",
		persist:  e.PersistKeys,
	}
	for i := range e.Users {
		u := e.Users[i]
		s.users[strings.ToLower(u.Email)] = &u
	}
	if _, err := rand.Read(s.ssoKey); err != nil {
		return nil, err
	}
	if s.persist {
		s.storage = ctx.Storage()
		if err := s.loadKeys(ctx); err != nil {
			return nil, fmt.Errorf("loading signing keys: %w", err)
		}
	}
	if len(s.keys) == 0 {
		if _, err := s.rotate(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// ssoSession is a browser's single sign-on session: who, since when, and
// which applications it signed in to (for front-channel logout).
type ssoSession struct {
	email    string
	authTime time.Time
	clients  []string
	expires  time.Time
	kmsi     bool // "Keep me signed in" was checked
	mfa      bool // the user gave a second factor in this session
}

// passedMFA tells whether a live session's user gave a second factor.
func (s *tenantState) passedMFA(sid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[sid]
	return ss != nil && ss.mfa && !s.now().After(ss.expires)
}

// markMFA records that the session's user gave a second factor.
func (s *tenantState) markMFA(sid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss := s.sessions[sid]; ss != nil {
		ss.mfa = true
	}
}

// newSession starts a single sign-on session, alive until expires, and
// returns its sid.
func (s *tenantState) newSession(email string, authTime, expires time.Time, kmsi bool) string {
	sid := newGUID()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, old := range s.sessions { // forget what has expired
		if s.now().After(old.expires) {
			delete(s.sessions, id)
		}
	}
	s.sessions[sid] = &ssoSession{email: email, authTime: authTime, expires: expires, kmsi: kmsi}
	return sid
}

// session returns a live session's email and auth time.
func (s *tenantState) session(sid string) (string, time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[sid]
	if ss == nil || s.now().After(ss.expires) {
		return "", time.Time{}, false
	}
	return ss.email, ss.authTime, true
}

// extendSession moves a live session's end to now plus its period (the
// keep-me-signed-in period or the session lifetime) and returns that
// period and whether it is a keep-me-signed-in session.
func (s *tenantState) extendSession(sid string, lifetime, kmsiPeriod time.Duration) (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[sid]
	if ss == nil {
		return 0, false
	}
	period := lifetime
	if ss.kmsi {
		period = kmsiPeriod
	}
	ss.expires = s.now().Add(period)
	return period, ss.kmsi
}

// signedInTo notes that a session signed in to an application.
func (s *tenantState) signedInTo(sid, clientID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss := s.sessions[sid]; ss != nil && !slices.Contains(ss.clients, clientID) {
		ss.clients = append(ss.clients, clientID)
	}
}

// endSession ends a session and returns the applications it signed in to.
func (s *tenantState) endSession(sid string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.sessions[sid]
	delete(s.sessions, sid)
	if ss == nil {
		return nil
	}
	return ss.clients
}

// hasTenant tells whether a user belongs to the tenant ID.
func (s *tenantState) hasTenant(tid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.users {
		if strings.EqualFold(u.TenantID, tid) {
			return true
		}
	}
	return false
}

// Destruct implements caddy.Destructor.
func (s *tenantState) Destruct() error { return nil }

// storedKey is a signing key as kept in Caddy's storage.
type storedKey struct {
	KID string `json:"kid"`
	NBF int64  `json:"nbf"`
	PEM string `json:"pem"`
}

func (s *tenantState) loadKeys(ctx caddy.Context) error {
	data, err := s.storage.Load(ctx, s.storeKey)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var stored []storedKey
	if err := json.Unmarshal(data, &stored); err != nil {
		return err
	}
	for _, k := range stored {
		block, _ := pem.Decode([]byte(k.PEM))
		if block == nil {
			return fmt.Errorf("key %s: not PEM", k.KID)
		}
		key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return fmt.Errorf("key %s: %w", k.KID, err)
		}
		s.keys = append(s.keys, signingKey{kid: k.KID, nbf: k.NBF, key: key})
	}
	return nil
}

// rotate makes a new signing key; the previous one stays published so that
// tokens it signed still verify. It returns the new key's ID.
func (s *tenantState) rotate() (string, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(key.N.Bytes())
	k := signingKey{kid: base64.RawURLEncoding.EncodeToString(sum[:]), nbf: s.now().Unix(), key: key}
	s.mu.Lock()
	s.keys = append(s.keys, k)
	if len(s.keys) > 2 {
		s.keys = s.keys[len(s.keys)-2:]
	}
	keys := append([]signingKey(nil), s.keys...)
	s.mu.Unlock()
	if s.persist {
		var stored []storedKey
		for _, k := range keys {
			p := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k.key)})
			stored = append(stored, storedKey{KID: k.kid, NBF: k.nbf, PEM: string(p)})
		}
		data, _ := json.Marshal(stored)
		if err := s.storage.Store(caddy.ActiveContext(), s.storeKey, data); err != nil {
			return "", fmt.Errorf("storing signing keys: %w", err)
		}
	}
	return k.kid, nil
}

// current is the key that signs new tokens.
func (s *tenantState) current() signingKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[len(s.keys)-1]
}

// jwks is the published key set, in B2C's shape.
func (s *tenantState) jwks() map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]map[string]any, 0, len(s.keys))
	for i := len(s.keys) - 1; i >= 0; i-- {
		k := s.keys[i]
		keys = append(keys, map[string]any{
			"kid": k.kid,
			"nbf": k.nbf,
			"use": "sig",
			"kty": "RSA",
			"e":   base64.RawURLEncoding.EncodeToString([]byte{1, 0, 1}),
			"n":   base64.RawURLEncoding.EncodeToString(k.key.N.Bytes()),
		})
	}
	return map[string]any{"keys": keys}
}

// publicKey finds a published key by ID.
func (s *tenantState) publicKey(kid string) *jose.JSONWebKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range s.keys {
		if k.kid == kid {
			return &jose.JSONWebKey{Key: &k.key.PublicKey, KeyID: k.kid, Algorithm: "RS256"}
		}
	}
	return nil
}

func (s *tenantState) user(email string) *User {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[strings.ToLower(email)]
	if u == nil {
		return nil
	}
	c := *u
	return &c
}

// addUser adds an account; it fails if the email is taken.
func (s *tenantState) addUser(u User) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.ToLower(u.Email)
	if _, ok := s.users[key]; ok {
		return false
	}
	s.users[key] = &u
	return true
}

// updateUser changes an account in place.
func (s *tenantState) updateUser(email string, change func(*User)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[strings.ToLower(email)]
	if u == nil {
		return false
	}
	change(u)
	return true
}

// issue stores a grant under a new random handle in m (codes or refresh).
func (s *tenantState) issue(m map[string]*grant, g *grant, handle string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for h, old := range m { // forget what expired long ago (an expired refresh token still answers AADB2C90080 for a day)
		if now.After(old.expires.Add(24 * time.Hour)) {
			delete(m, h)
		}
	}
	m[handle] = g
}

// take removes and returns a code: codes are single-use, whatever the
// outcome of the redemption.
func (s *tenantState) takeCode(code string) *grant {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.codes[code]
	delete(s.codes, code)
	if g == nil || s.now().After(g.expires) {
		return nil
	}
	return g
}

// refreshGrant returns a copy of a refresh token's grant (nil for an
// unknown or revoked token); expired tells a token past its lifetime.
func (s *tenantState) refreshGrant(token string) (g *grant, expired bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g = s.refresh[token]; g == nil {
		return nil, false
	}
	c := *g
	return &c, s.now().After(g.expires)
}

// revokeRefreshTokens revokes every refresh token of a user, as B2C does
// when the password changes.
func (s *tenantState) revokeRefreshTokens(email string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t, g := range s.refresh {
		if strings.EqualFold(g.email, email) {
			delete(s.refresh, t)
		}
	}
}

// throttleGraph tells whether this Graph request is one graph_throttle
// answers 429.
func (s *tenantState) throttleGraph() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.graph429 > 0 {
		s.graph429--
		return true
	}
	return false
}

// userByObjectIDOrEmail finds a user as Graph's /users/{id} does: by object
// ID or user principal name.
func (s *tenantState) userByObjectIDOrEmail(id string) *User {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.users {
		if strings.EqualFold(u.ObjectID, id) || strings.EqualFold(u.Email, id) {
			c := *u
			return &c
		}
	}
	return nil
}
