// Package assertion signs identity assertions: short JWTs (ES256, with a
// kid) that tell an upstream who the user is, verifiable with the keys the
// site publishes. The keys live in Caddy's storage, so every instance that
// shares it signs with the same keys, and they rotate on a schedule:
//
//   - a key is made (and published) PublishAhead before it starts signing;
//   - it signs for SignPeriod;
//   - it stays published for Retain after it stops signing, longer than
//     any assertion it signed lives.
package assertion

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/go-jose/go-jose/v4"
)

// The rotation schedule.
const (
	PublishAhead = 24 * time.Hour
	SignPeriod   = 30 * 24 * time.Hour
	Retain       = time.Hour
	// Lifetime is how long an assertion is valid.
	Lifetime = 5 * time.Minute
	// reload is how often the ring is read again from storage (another
	// instance may have rotated it).
	reload = time.Hour
)

// StorageKey is where an app's ring lives in Caddy's storage: one ring
// per app (its name, e.g. a hash of the client ID), so that sites of other
// apps sharing the storage never verify each other's assertions.
func StorageKey(app string) string { return "b2c_auth/assertion_keys/" + app + ".json" }

// Key is a signing key and its schedule.
type Key struct {
	ID      string
	Private *ecdsa.PrivateKey
	Created time.Time // published from then; signs from Created+PublishAhead
}

func (k Key) signsFrom() time.Time  { return k.Created.Add(PublishAhead) }
func (k Key) signsUntil() time.Time { return k.signsFrom().Add(SignPeriod) }

// storedKey is a Key as stored: the private key in PKCS #8, base64.
type storedKey struct {
	ID      string `json:"kid"`
	PKCS8   string `json:"pkcs8"`
	Created int64  `json:"created"` // Unix seconds
}

// Ring is the keys, loaded from storage and rotated there.
type Ring struct {
	storage certmagic.Storage
	key     string // StorageKey of the app
	now     func() time.Time

	mu     sync.Mutex
	keys   []Key
	loaded time.Time
}

// Open reads an app's ring from storage, making or rotating keys as the
// schedule says (under the storage's lock, so instances agree).
func Open(ctx context.Context, storage certmagic.Storage, app string, now func() time.Time) (*Ring, error) {
	r := &Ring{storage: storage, key: StorageKey(app), now: now}
	if err := r.refresh(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Sign signs claims (iat, nbf and exp added) with the current key.
func (r *Ring) Sign(ctx context.Context, claims map[string]any) (string, time.Time, error) {
	now := r.now()
	k, err := r.current(ctx, now)
	if err != nil {
		return "", time.Time{}, err
	}
	exp := now.Add(Lifetime)
	c := make(map[string]any, len(claims)+3)
	for name, v := range claims {
		c[name] = v
	}
	c["iat"], c["nbf"], c["exp"] = now.Unix(), now.Unix(), exp.Unix()
	payload, err := json.Marshal(c)
	if err != nil {
		return "", time.Time{}, err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k.Private},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.ID))
	if err != nil {
		return "", time.Time{}, err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", time.Time{}, err
	}
	token, err := jws.CompactSerialize()
	return token, exp, err
}

// JWKS is the published keys: the current one, the next one, and those
// whose assertions may still be alive.
func (r *Ring) JWKS(ctx context.Context) ([]byte, error) {
	if _, err := r.current(ctx, r.now()); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	set := jose.JSONWebKeySet{}
	for _, k := range r.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: &k.Private.PublicKey, KeyID: k.ID, Algorithm: string(jose.ES256), Use: "sig"})
	}
	return json.Marshal(set)
}

// current is the key that signs now, reading the ring again when it is
// old or has no key for now.
func (r *Ring) current(ctx context.Context, now time.Time) (Key, error) {
	r.mu.Lock()
	k, ok := signing(r.keys, now)
	stale := now.Sub(r.loaded) > reload || needsRotation(r.keys, now)
	r.mu.Unlock()
	if ok && !stale {
		return k, nil
	}
	if err := r.refresh(ctx); err != nil {
		if ok {
			return k, nil // storage is away: go on with what is known
		}
		return Key{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if k, ok := signing(r.keys, now); ok {
		return k, nil
	}
	return Key{}, errors.New("assertion: no signing key")
}

// signing is the key that signs at now: of those whose period covers it,
// the newest.
func signing(keys []Key, now time.Time) (Key, bool) {
	var best Key
	found := false
	for _, k := range keys {
		if !now.Before(k.signsFrom()) && now.Before(k.signsUntil()) && (!found || k.Created.After(best.Created)) {
			best, found = k, true
		}
	}
	return best, found
}

// needsRotation tells whether the ring lacks a key for now, or the next
// key is due to be published.
func needsRotation(keys []Key, now time.Time) bool {
	latest := time.Time{}
	for _, k := range keys {
		if k.signsUntil().After(latest) {
			latest = k.signsUntil()
		}
	}
	// The key after the current one must exist PublishAhead before the
	// current one stops signing.
	return latest.Sub(now) < PublishAhead+time.Minute
}

// refresh loads the ring and, if the schedule says so, rotates it in
// storage under its lock.
func (r *Ring) refresh(ctx context.Context) error {
	now := r.now()
	keys, err := r.load(ctx)
	if err != nil {
		return err
	}
	if _, ok := signing(keys, now); !ok || needsRotation(keys, now) || expired(keys, now) {
		if err := r.storage.Lock(ctx, r.key); err != nil {
			return err
		}
		defer func() { _ = r.storage.Unlock(ctx, r.key) }()
		if keys, err = r.load(ctx); err != nil { // another instance may have rotated meanwhile
			return err
		}
		if keys, err = rotate(keys, now); err != nil {
			return err
		}
		if err := r.save(ctx, keys); err != nil {
			return err
		}
	}
	r.mu.Lock()
	r.keys, r.loaded = keys, now
	r.mu.Unlock()
	return nil
}

// expired tells whether a key is past its retention.
func expired(keys []Key, now time.Time) bool {
	for _, k := range keys {
		if now.After(k.signsUntil().Add(Retain)) {
			return true
		}
	}
	return false
}

// rotate drops the keys past their retention, makes the first key (usable
// at once) when there is none for now, and the next one when it is due.
func rotate(keys []Key, now time.Time) ([]Key, error) {
	var kept []Key
	for _, k := range keys {
		if !now.After(k.signsUntil().Add(Retain)) {
			kept = append(kept, k)
		}
	}
	if _, ok := signing(kept, now); !ok {
		k, err := newKey(now.Add(-PublishAhead)) // nothing signs: sign at once
		if err != nil {
			return nil, err
		}
		kept = append(kept, k)
	}
	if needsRotation(kept, now) {
		latest := kept[0]
		for _, k := range kept {
			if k.signsUntil().After(latest.signsUntil()) {
				latest = k
			}
		}
		// Published now, it signs from when the latest stops.
		k, err := newKey(latest.signsUntil().Add(-PublishAhead))
		if err != nil {
			return nil, err
		}
		kept = append(kept, k)
	}
	return kept, nil
}

func newKey(created time.Time) (Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Key{}, err
	}
	der, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	sum := sha256.Sum256(der)
	return Key{ID: hex.EncodeToString(sum[:8]), Private: priv, Created: created.Truncate(time.Second)}, nil
}

func (r *Ring) load(ctx context.Context) ([]Key, error) {
	data, err := r.storage.Load(ctx, r.key)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var stored []storedKey
	if err := json.Unmarshal(data, &stored); err != nil {
		return nil, fmt.Errorf("assertion keys in storage: %v", err)
	}
	keys := make([]Key, 0, len(stored))
	for _, s := range stored {
		der, err := base64.StdEncoding.DecodeString(s.PKCS8)
		if err != nil {
			return nil, fmt.Errorf("assertion key %s: %v", s.ID, err)
		}
		priv, err := x509.ParsePKCS8PrivateKey(der)
		ec, ok := priv.(*ecdsa.PrivateKey)
		if err != nil || !ok {
			return nil, fmt.Errorf("assertion key %s: not an ECDSA key", s.ID)
		}
		keys = append(keys, Key{ID: s.ID, Private: ec, Created: time.Unix(s.Created, 0)})
	}
	return keys, nil
}

func (r *Ring) save(ctx context.Context, keys []Key) error {
	stored := make([]storedKey, 0, len(keys))
	for _, k := range keys {
		der, err := x509.MarshalPKCS8PrivateKey(k.Private)
		if err != nil {
			return err
		}
		stored = append(stored, storedKey{ID: k.ID, PKCS8: base64.StdEncoding.EncodeToString(der), Created: k.Created.Unix()})
	}
	data, _ := json.Marshal(stored)
	return r.storage.Store(ctx, r.key, data)
}
