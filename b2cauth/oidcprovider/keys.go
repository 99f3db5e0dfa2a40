package oidcprovider

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/time/rate"
)

// keySet is the provider's JWKS, kept in memory and fetched again when a
// token names an unknown key (at most a few times a minute) and once it is
// a day old (so a removed key stops being trusted). Signatures are checked
// by go-oidc (oidc.StaticKeySet), never here.
type keySet struct {
	observe func(kind string, start time.Time, err error)
	url     string
	client  *http.Client
	algs    []string
	now     func() time.Time
	limiter *rate.Limiter

	mu       sync.Mutex
	keys     []publishedKey
	fetched  time.Time
	fetching *keyFetch // the fetch in flight, which every request that needs it waits for
	waiting  atomic.Int64
}

// keyFetch is a fetch of the keys in flight.
type keyFetch struct {
	done chan struct{}
	err  error
}

// VerifySignature implements oidc.KeySet.
func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	algs := make([]jose.SignatureAlgorithm, len(k.algs))
	for i, a := range k.algs {
		algs[i] = jose.SignatureAlgorithm(a)
	}
	jws, err := jose.ParseSignedCompact(jwt, algs)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("malformed jwt")
	}
	kid := jws.Signatures[0].Header.KeyID
	if k.stale() {
		if err := k.fetch(ctx, kid); err != nil && !errors.Is(err, errNoFetch) && len(k.matching(kid)) == 0 {
			return nil, fmt.Errorf("%w: fetching keys: %v", ErrUnavailable, err)
		}
	}
	pubs := k.matching(kid)
	if len(pubs) == 0 {
		if err := k.fetch(ctx, kid); err != nil && !errors.Is(err, errNoFetch) {
			return nil, fmt.Errorf("%w: fetching keys: %v", ErrUnavailable, err)
		}
		pubs = k.matching(kid)
	}
	if len(pubs) == 0 {
		return nil, fmt.Errorf("no key with kid %q", kid)
	}
	err = fmt.Errorf("no key with kid %q verifies the token", kid)
	for _, key := range pubs {
		payload, verr := (&oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{key.Key}}).VerifySignature(ctx, jwt)
		if verr != nil {
			err = verr
			continue
		}
		if !key.forIssuer(payload) {
			// Microsoft: with the tenant-independent metadata, a key whose
			// issuer names a tenant "should only be used when the iss claim
			// in the token matches the value exactly".
			err = fmt.Errorf("key %q belongs to issuer %q, not to the token's", key.KeyID, key.issuer)
			continue
		}
		return payload, nil
	}
	return nil, err
}

// publishedKey is a key of the JWKS, with the issuer Entra ID's JWKS may
// name for it (a tenant's, or the {tenantid} template for any tenant).
type publishedKey struct {
	jose.JSONWebKey
	issuer string
}

// forIssuer tells whether a verified token's iss may use this key: any
// when the key names no issuer or the template; else exactly its own.
func (k publishedKey) forIssuer(payload []byte) bool {
	if k.issuer == "" || strings.Contains(k.issuer, TenantPlaceholder) {
		return true
	}
	var c struct {
		Iss string `json:"iss"`
	}
	return json.Unmarshal(payload, &c) == nil && c.Iss == k.issuer
}

// matching are the keys a token with this kid may be signed with: the key
// with that ID or, for a token without a kid, every key.
func (k *keySet) matching(kid string) []publishedKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.matchingLocked(kid)
}

func (k *keySet) matchingLocked(kid string) []publishedKey {
	var keys []publishedKey
	for _, key := range k.keys {
		if kid == "" || key.KeyID == kid {
			keys = append(keys, key)
		}
	}
	return keys
}

// stale tells whether the keys were fetched over MaxAge ago.
func (k *keySet) stale() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.staleLocked()
}

func (k *keySet) staleLocked() bool {
	return !k.fetched.IsZero() && k.now().Sub(k.fetched) > MaxAge
}

// errNoFetch is a fetch the rate limit refused, with none in flight.
var errNoFetch = errors.New("keys fetched too recently")

// fetch fetches the keys again for a request that needs kid: it waits for
// the fetch in flight, or starts one when the rate limit allows, so that
// requests at a cold start or a key rotation wait for one fetch rather
// than fail; the wait is bounded by the fetch's own timeout and the
// request's context.
func (k *keySet) fetch(ctx context.Context, kid string) error {
	k.mu.Lock()
	f := k.fetching
	if f == nil {
		if len(k.matchingLocked(kid)) > 0 && !k.staleLocked() {
			k.mu.Unlock()
			return nil // another request's fetch brought it meanwhile
		}
		if !k.limiter.Allow() {
			k.mu.Unlock()
			return errNoFetch
		}
		f = &keyFetch{done: make(chan struct{})}
		k.fetching = f
		go func() {
			f.err = k.refresh(context.WithoutCancel(ctx))
			k.mu.Lock()
			k.fetching = nil
			k.mu.Unlock()
			close(f.done)
		}()
	}
	k.mu.Unlock()
	k.waiting.Add(1)
	defer k.waiting.Add(-1)
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (k *keySet) refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	start := time.Now()
	_, err := GetJSON(ctx, k.client, k.url, &set)
	if k.observe != nil {
		k.observe("keys", start, err)
	}
	if err != nil {
		return err
	}
	var keys []publishedKey
	for _, raw := range set.Keys {
		var key jose.JSONWebKey
		if json.Unmarshal(raw, &key) != nil || !key.IsPublic() || (key.Use != "" && key.Use != "sig") {
			continue // a key we cannot use is skipped, not fatal
		}
		var extra struct {
			Issuer string `json:"issuer"`
		}
		_ = json.Unmarshal(raw, &extra)
		keys = append(keys, publishedKey{JSONWebKey: key, issuer: extra.Issuer})
	}
	k.mu.Lock()
	k.keys, k.fetched = keys, k.now()
	k.mu.Unlock()
	return nil
}
