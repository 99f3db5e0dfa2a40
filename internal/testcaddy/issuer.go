package testcaddy

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Issuer is an OpenID issuer of workload tokens, as a Kubernetes cluster's
// service-account issuer is: metadata at <URL>/.well-known/openid-configuration,
// its keys at <URL>/openid/v1/jwks, RS256 tokens. A federated credential
// trusts it.
type Issuer struct {
	URL string
	key *rsa.PrivateKey
}

// NewIssuer starts an Issuer on 127.0.0.1 for the test.
func NewIssuer(t interface {
	TB
	Cleanup(func())
}) *Issuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	iss := &Issuer{key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": iss.URL, "jwks_uri": iss.URL + "/openid/v1/jwks",
			"response_types_supported": []string{"id_token"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"}})
	})
	mux.HandleFunc("GET /openid/v1/jwks", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "sa-key", Algorithm: "RS256", Use: "sig"}}})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	iss.URL = srv.URL
	return iss
}

// Token signs a service-account token for subject and audience, valid for
// the given time from now; change edits its claims before signing.
func (iss *Issuer) Token(t TB, subject, audience string, valid time.Duration, change ...func(map[string]any)) string {
	t.Helper()
	now := time.Now()
	claims := map[string]any{"iss": iss.URL, "sub": subject, "aud": []string{audience},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(valid).Unix(),
		"kubernetes.io": map[string]any{"namespace": "web", "serviceaccount": map[string]string{"name": "caddy"}}}
	for _, c := range change {
		c(claims)
	}
	return SignJWT(t, iss.key, "sa-key", claims)
}

// SignJWT signs claims with an RSA key, RS256, naming the kid.
func SignJWT(t TB, key *rsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}
