package b2cauth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/certmagic"
	"github.com/go-jose/go-jose/v4"
)

// hostile is a hand-made OpenID provider whose every answer a test sets:
// B2C-shaped metadata (an issuer that differs from the discovery URL),
// JWKS, and a token endpoint that answers whatever the test wants.
type hostile struct {
	srv    *httptest.Server
	issuer string

	mu            sync.Mutex
	keys          []jose.JSONWebKey
	tokenReply    string // the token endpoint's JSON body
	tokenCode     int
	jwksHits      int
	refreshHits   int // refresh_token grants received
	down          bool
	keyIssuers    map[string]string // kid → the issuer its JWKS entry names, as Entra's does
	metaQueries   []string          // the query of each metadata request
	tokenPolicies []string          // the p= of each token request
	// extraMeta is added to the metadata document (userinfo_endpoint,
	// cloud_instance_name, …); /userinfo answers userInfoReply and
	// counts requests in userInfoHits.
	extraMeta     map[string]any
	userInfoReply string
	userInfoHits  int
}

const testClient = "client-123"

func newHostile(t testing.TB) *hostile {
	p := &hostile{tokenCode: 200}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		switch {
		case strings.HasSuffix(r.URL.Path, "/v2.0/.well-known/openid-configuration"):
			p.metaQueries = append(p.metaQueries, r.URL.RawQuery)
			policy := strings.Split(r.URL.Path, "/")[2]
			base := p.srv.URL + "/contoso.onmicrosoft.com/oauth2/v2.0/"
			doc := map[string]any{
				"issuer":                 p.issuer,
				"authorization_endpoint": base + "authorize?p=" + policy,
				"token_endpoint":         base + "token?p=" + policy,
				"end_session_endpoint":   base + "logout?p=" + policy,
				"jwks_uri":               p.srv.URL + "/contoso.onmicrosoft.com/discovery/v2.0/keys?p=" + policy,
				// A provider announcing weak algorithms must not get them accepted.
				"id_token_signing_alg_values_supported": []string{"RS256", "HS256", "none"},
			}
			maps.Copy(doc, p.extraMeta)
			_ = json.NewEncoder(w).Encode(doc)
		case strings.HasSuffix(r.URL.Path, "/userinfo"):
			p.userInfoHits++
			_, _ = w.Write([]byte(p.userInfoReply))
		case strings.HasSuffix(r.URL.Path, "/keys"):
			p.jwksHits++
			data, _ := json.Marshal(jose.JSONWebKeySet{Keys: p.keys})
			if len(p.keyIssuers) > 0 {
				var set struct {
					Keys []map[string]any `json:"keys"`
				}
				_ = json.Unmarshal(data, &set)
				for _, k := range set.Keys {
					if iss, ok := p.keyIssuers[k["kid"].(string)]; ok {
						k["issuer"] = iss
					}
				}
				data, _ = json.Marshal(set)
			}
			_, _ = w.Write(data)
		case strings.HasSuffix(r.URL.Path, "/token"):
			_ = r.ParseForm()
			if r.PostForm.Get("grant_type") == "refresh_token" {
				p.refreshHits++
			}
			p.tokenPolicies = append(p.tokenPolicies, r.URL.Query().Get("p"))
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(p.tokenCode)
			_, _ = w.Write([]byte(p.tokenReply))
		default:
			http.NotFound(w, r)
		}
	}))
	p.issuer = "https://contoso.b2clogin.com/f06c2fe8-709f-4030-85dc-38a4bfd9e82d/v2.0/"
	t.Cleanup(p.srv.Close)
	return p
}

func (p *hostile) set(f func(p *hostile)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

// signer is a key the tests sign tokens with.
type signer struct {
	kid string
	key *rsa.PrivateKey
}

func newSigner(t testing.TB, kid string) signer {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return signer{kid: kid, key: k}
}

func (s signer) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: &s.key.PublicKey, KeyID: s.kid, Use: "sig", Algorithm: "RS256"}
}

func (s signer) sign(t testing.TB, claims map[string]any) string {
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", s.kid)
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: s.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := sig.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

// unsigned builds a token with any header, unsigned or with a given signature.
func unsigned(header, claims map[string]any, sig string) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "." + sig
}

// hmacWithPublicKey signs HS256 with the RSA public key as the secret: the
// classic algorithm-confusion attack.
func hmacWithPublicKey(t testing.TB, s signer, claims map[string]any) string {
	secret := x509.MarshalPKCS1PublicKey(&s.key.PublicKey)
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret}, (&jose.SignerOptions{}).WithHeader("kid", s.kid))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, _ := sig.Sign(payload)
	out, _ := jws.CompactSerialize()
	return out
}

const testCookieSecret = "q0F1c3Rvbi1ub3QtYS1yZWFsLXNlY3JldC0zMmJ5dGU="

// newTestHandler provisions a handler against the hostile provider.
func newTestHandler(t testing.TB, p *hostile, change func(*Handler)) *Handler {
	h := &Handler{
		Authority:           p.srv.URL + "/contoso.onmicrosoft.com",
		Policy:              "B2C_1_susi",
		PasswordResetPolicy: "B2C_1_reset",
		ClientID:            testClient,
		CookieSecret:        []string{testCookieSecret},
		RequireScopes:       nil,
	}
	if change != nil {
		change(h)
	}
	h.httpClient = p.srv.Client()
	if h.storage == nil {
		h.storage = &certmagic.FileStorage{Path: t.TempDir()}
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Cleanup() })
	return h
}

// result is what a request to the handler produced.
type result struct {
	*httptest.ResponseRecorder
	reachedNext bool
	repl        *caddy.Replacer
	upstream    http.Header
}

func (r result) cookie(name string) *http.Cookie {
	for _, c := range r.Result().Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// serve runs a request through the handler, with Caddy's replacer, and a
// next handler that records that it was reached.
func serve(h *Handler, req *http.Request) result {
	repl := caddy.NewReplacer()
	ctx := context.WithValue(req.Context(), caddy.ReplacerCtxKey, repl)
	if ctx.Value(caddyhttp.VarsCtxKey) == nil { // Caddy gives every request its variables
		ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
	}
	req = req.WithContext(ctx)
	res := result{ResponseRecorder: httptest.NewRecorder(), repl: repl}
	err := h.ServeHTTP(res, req, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		res.reachedNext = true
		res.upstream = r.Header.Clone()
		w.WriteHeader(http.StatusOK)
		return nil
	}))
	if err != nil {
		var he caddyhttp.HandlerError
		if asHandlerError(err, &he) {
			res.Code = he.StatusCode
		} else {
			res.Code = 500
		}
	}
	return res
}

func asHandlerError(err error, he *caddyhttp.HandlerError) bool {
	e, ok := err.(caddyhttp.HandlerError)
	if ok {
		*he = e
	}
	return ok
}

func navigation(method, target string) *http.Request {
	req := httptest.NewRequest(method, target, nil)
	req.Header.Set("Accept", "text/html")
	return req
}

// pendingFlow starts a sign-in and returns its state, nonce and cookie.
func pendingFlow(t testing.TB, h *Handler, path string) (state, nonce string, flowCookie *http.Cookie) {
	t.Helper()
	res := serve(h, navigation("GET", path))
	if res.Code != http.StatusFound {
		t.Fatalf("sign-in start: %d %s", res.Code, res.Body)
	}
	u, _ := url.Parse(res.Header().Get("Location"))
	q := u.Query()
	for _, c := range res.Result().Cookies() {
		if strings.HasPrefix(c.Name, flowCookiePrefix) && c.MaxAge > 0 {
			flowCookie = c
		}
	}
	if flowCookie == nil {
		t.Fatal("no flow cookie")
	}
	return q.Get("state"), q.Get("nonce"), flowCookie
}

func callbackRequest(state string, flowCookie *http.Cookie, extra url.Values) *http.Request {
	q := url.Values{"state": {state}}
	for k, v := range extra {
		q[k] = v
	}
	req := navigation("GET", defaultRedirectPath+"?"+q.Encode())
	if flowCookie != nil {
		req.AddCookie(flowCookie)
	}
	return req
}

// goodClaims are an ID token's claims that pass every check.
func goodClaims(p *hostile, nonce string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": p.issuer, "aud": testClient, "sub": "user-1", "oid": "user-1",
		"exp": now.Add(time.Hour).Unix(), "nbf": now.Unix(), "iat": now.Unix(),
		"nonce": nonce, "tfp": "B2C_1_susi", "emails": []string{"ada@contoso.example"}, "name": "Ada",
	}
}
