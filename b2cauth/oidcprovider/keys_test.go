package oidcprovider

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"go.step.sm/crypto/jose"
	"golang.org/x/time/rate"
)

// TestColdStartRequestsWaitForTheKeys: the attack on availability — 40
// bearer requests right after a restart, the keys not yet fetched: those
// that lost the rate-limited fetch failed with "no key with kid". Now they
// wait for the one fetch in flight. The key endpoint blocks until the test
// has every request waiting, then answers once.
func TestColdStartRequestsWaitForTheKeys(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwk := jose.JSONWebKey{Key: &key.PublicKey, KeyID: "cold", Use: "sig", Algorithm: "RS256"}
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "cold"))
	release := make(chan struct{})
	fetches := new(atomic.Int32)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		<-release
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}})
	}))
	t.Cleanup(jwks.Close)
	keys := &keySet{url: jwks.URL, client: jwks.Client(), algs: []string{"RS256"}, now: time.Now, limiter: rate.NewLimiter(rate.Every(10*time.Second), 3)}
	signed, _ := signer.Sign([]byte(`{"sub":"user-1"}`))
	token, _ := signed.CompactSerialize()

	const n = 40
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := keys.VerifySignature(context.Background(), token)
			errs <- err
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for keys.waiting.Load() < n { // every request is waiting for the fetch (polled, not timed)
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d requests waiting", keys.waiting.Load(), n)
		}
		runtime.Gosched()
	}
	close(release)
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("a request at a cold start: %v", err)
		}
	}
	if fetches.Load() != 1 {
		t.Errorf("%d key fetches for %d requests, want 1", fetches.Load(), n)
	}
}
