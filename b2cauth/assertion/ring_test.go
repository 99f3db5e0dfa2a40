package assertion

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/go-jose/go-jose/v4"
)

// verify checks an assertion against a published JWKS and returns its kid
// and claims.
func verify(t *testing.T, token string, jwks []byte) (string, map[string]any) {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		t.Fatal(err)
	}
	jws, err := jose.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	kid := jws.Signatures[0].Header.KeyID
	keys := set.Key(kid)
	if len(keys) != 1 {
		t.Fatalf("kid %s is not published", kid)
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	_ = json.Unmarshal(payload, &c)
	return kid, c
}

// TestRotationSchedule: the next key is published a day before it signs;
// the old one stays published until its assertions have expired; two
// instances sharing the storage sign with the same keys.
func TestRotationSchedule(t *testing.T) {
	ctx := context.Background()
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	start := time.Now()
	clock := start
	now := func() time.Time { return clock }
	a, err := Open(ctx, storage, "app-a", now)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Open(ctx, storage, "app-a", now)

	token, exp, err := a.Sign(ctx, map[string]any{"sub": "user-1"})
	if err != nil || exp.Sub(clock) != Lifetime {
		t.Fatalf("sign: %v, exp in %s", err, exp.Sub(clock))
	}
	jwks, _ := b.JWKS(ctx)
	first, claims := verify(t, token, jwks)
	if claims["sub"] != "user-1" || claims["exp"] == nil {
		t.Errorf("claims %v", claims)
	}
	if tb, _, _ := b.Sign(ctx, nil); tb == "" {
		t.Fatal("the second instance cannot sign")
	} else if kid, _ := verify(t, tb, jwks); kid != first {
		t.Errorf("the instances sign with different keys: %s, %s", first, kid)
	}

	// A day before the key stops signing, the next is published, unused.
	clock = start.Add(SignPeriod - PublishAhead + time.Hour)
	token, _, _ = a.Sign(ctx, nil)
	jwks, _ = b.JWKS(ctx)
	var set jose.JSONWebKeySet
	_ = json.Unmarshal(jwks, &set)
	if kid, _ := verify(t, token, jwks); kid != first || len(set.Keys) != 2 {
		t.Fatalf("before the switch: signs with %s, %d keys published", kid, len(set.Keys))
	}
	next := set.Keys[1].KeyID
	if next == first {
		next = set.Keys[0].KeyID
	}

	// Past the switch, the new key signs; the old stays published while
	// its assertions may live, then goes: an assertion signed just before
	// the switch still verifies just after it, as traffic flows on.
	beforeSwitch, _, _ := a.Sign(ctx, map[string]any{"sub": "in-flight"})
	clock = start.Add(SignPeriod + time.Minute)
	token, _, _ = b.Sign(ctx, nil)
	jwks, _ = a.JWKS(ctx)
	if kid, c := verify(t, beforeSwitch, jwks); kid != first || c["sub"] != "in-flight" {
		t.Errorf("an assertion signed before the switch: kid %s", kid)
	}
	if kid, _ := verify(t, token, jwks); kid != next {
		t.Errorf("after the switch: signs with %s, want %s", kid, next)
	}
	_ = json.Unmarshal(jwks, &set)
	if len(set.Keys) < 2 || len(set.Key(first)) != 1 {
		t.Errorf("the old key went before its assertions expired: %d keys", len(set.Keys))
	}
	clock = start.Add(SignPeriod + Retain + time.Minute)
	a.mu.Lock()
	a.loaded = time.Time{} // as an hour has passed
	a.mu.Unlock()
	jwks, _ = a.JWKS(ctx)
	_ = json.Unmarshal(jwks, &set)
	if len(set.Key(first)) != 0 {
		t.Error("the old key is still published after its retention")
	}
}

// TestARingPerApp: two apps' sites on one storage sign with rings of
// their own, so one app's assertion never verifies with the other's keys.
func TestARingPerApp(t *testing.T) {
	ctx := context.Background()
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	a, err := Open(ctx, storage, "app-a", time.Now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(ctx, storage, "app-b", time.Now)
	if err != nil {
		t.Fatal(err)
	}
	token, _, _ := a.Sign(ctx, map[string]any{"sub": "user-1"})
	jwks, _ := b.JWKS(ctx)
	var set jose.JSONWebKeySet
	_ = json.Unmarshal(jwks, &set)
	jws, err := jose.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Key(jws.Signatures[0].Header.KeyID)) != 0 {
		t.Error("app b publishes the key that signed app a's assertion")
	}
	for _, k := range set.Keys {
		if _, err := jws.Verify(k); err == nil {
			t.Error("app a's assertion verifies with app b's keys")
		}
	}
}
