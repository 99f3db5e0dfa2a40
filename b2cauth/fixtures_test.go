package b2cauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/oidcprovider"
	"github.com/caddy-b2c/caddy-b2c/b2cauth/session"
	"github.com/go-jose/go-jose/v4"
)

// TestRealB2CTokensVerify checks the four real, signed B2C tokens of
// testdata/fixtures against B2C's published key, with the clock pinned to
// their lifetime: they must pass every check, and fail when altered.
func TestRealB2CTokensVerify(t *testing.T) {
	var tokens map[string]json.RawMessage
	readFixture(t, "b2c-signed-tokens.json", &tokens)
	var jwks jose.JSONWebKeySet
	readFixture(t, "b2c-jwks.json", &jwks)
	n := 0
	for name, raw := range tokens {
		if strings.HasPrefix(name, "_") {
			continue
		}
		n++
		var fx struct {
			JWT  string `json:"jwt"`
			Kind string `json:"kind"`
		}
		if err := json.Unmarshal(raw, &fx); err != nil {
			t.Fatal(err)
		}
		t.Run(name, func(t *testing.T) {
			payload, _ := session.JWTPayload(fx.JWT)
			var c struct {
				Iss   string `json:"iss"`
				Aud   string `json:"aud"`
				Iat   int64  `json:"iat"`
				Nonce string `json:"nonce"`
			}
			if err := json.Unmarshal(payload, &c); err != nil {
				t.Fatal(err)
			}
			p := newHostile(t)
			p.set(func(p *hostile) { p.issuer, p.keys = c.Iss, jwks.Keys })
			h := newTestHandler(t, p, func(h *Handler) { h.ClientID = c.Aud })
			pinned := time.Unix(c.Iat+60, 0)
			h.now = func() time.Time { return pinned }
			prov, _ := h.idp.provider(h.Policy)
			d, err := prov.Get(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			verify := func(token string) error {
				if fx.Kind == "id_token" {
					_, err := h.idp.verifyIDToken(context.Background(), d, token, c.Nonce, "")
					return err
				}
				_, err := h.idp.verifyAccessToken(context.Background(), d, token)
				return err
			}
			if err := verify(fx.JWT); err != nil {
				t.Fatalf("real %s refused: %v", fx.Kind, err)
			}
			// A real ID token, valid in every other way, never opens an API.
			if _, err := h.idp.verifyAccessToken(context.Background(), d, fx.JWT); fx.Kind == "id_token" && !errors.Is(err, errNotAccessToken) {
				t.Errorf("a real B2C ID token passed as an access token: %v", err)
			}
			parts := strings.Split(fx.JWT, ".")
			altered := []byte(parts[1])
			altered[10] ^= 0x01
			if err := verify(parts[0] + "." + string(altered) + "." + parts[2]); err == nil {
				t.Error("an altered token verifies")
			}
			// And outside its lifetime it is refused.
			h.now = func() time.Time { return pinned.Add(48 * time.Hour) }
			if err := verify(fx.JWT); err == nil {
				t.Error("an expired token verifies")
			}
		})
	}
	if n != 4 {
		t.Errorf("%d signed tokens in the fixture, want 4", n)
	}
}

// TestRealAtHash: the real ID token's at_hash matches the access token
// issued with it, and refuses another one (a swapped access token).
func TestRealAtHash(t *testing.T) {
	jwt := fixtureJWT(t)
	var jwks jose.JSONWebKeySet
	readFixture(t, "b2c-jwks.json", &jwks)
	idToken := jwt("dtjacdemo_id_token_2024")
	payload, _ := session.JWTPayload(idToken)
	var c struct {
		Iss, Aud, Nonce string
		Iat             int64
	}
	_ = json.Unmarshal(payload, &c)
	p := newHostile(t)
	p.set(func(p *hostile) { p.issuer, p.keys = c.Iss, jwks.Keys })
	h := newTestHandler(t, p, func(h *Handler) { h.ClientID = c.Aud })
	h.now = func() time.Time { return time.Unix(c.Iat+60, 0) }
	prov, _ := h.idp.provider(h.Policy)
	d, err := prov.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.idp.verifyIDToken(context.Background(), d, idToken, c.Nonce, jwt("dtjacdemo_access_token_2024")); err != nil {
		t.Errorf("the access token issued with the ID token: %v", err)
	}
	if _, err := h.idp.verifyIDToken(context.Background(), d, idToken, c.Nonce, jwt("fabrikamb2c_access_token_2020")); err == nil {
		t.Error("another access token passes the at_hash check")
	}
}

func readFixture(t *testing.T, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "testdata", "fixtures", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatal(err)
	}
}

// TestDiscoveryOfRealDocuments: real B2C metadata documents, in the ?p= form
// and the policy-in-path form, give endpoints to which parameters are
// appended without breaking their query.
func TestDiscoveryOfRealDocuments(t *testing.T) {
	for _, name := range []string{"b2c-openid-configuration.json", "b2c-openid-configuration.custom-policy.json", "b2c-openid-configuration.policy-in-path.partial.json"} {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("..", "testdata", "fixtures", name))
			if err != nil {
				t.Fatal(err)
			}
			var m oidcprovider.Metadata
			_ = json.Unmarshal(data, &m)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(data) }))
			t.Cleanup(srv.Close)
			h := newTestHandler(t, newHostile(t), func(h *Handler) { h.Authority = srv.URL + "/contoso.onmicrosoft.com" })
			res := serve(h, navigation("GET", "/"))
			loc := res.Header().Get("Location")
			base := strings.Split(m.AuthorizationEndpoint, "?")[0]
			if !strings.HasPrefix(loc, base+"?") || strings.Count(loc, "?") != 1 {
				t.Errorf("authorize URL %q is not the document's %q with parameters appended", loc, m.AuthorizationEndpoint)
			}
			if strings.Contains(m.AuthorizationEndpoint, "?p=") && !strings.Contains(loc, "p=b2c_1") {
				t.Errorf("authorize URL %q does not keep ?p=", loc)
			}
		})
	}
}

// TestRealSessionCompresses: a session holding B2C's real ID and access
// tokens (and a refresh token) is sealed compressed; it must come out
// clearly smaller than the same session sealed as plain JSON.
func TestRealSessionCompresses(t *testing.T) {
	jwt := fixtureJWT(t)
	h, _, _ := setup(t, nil)
	s := &session.Session{ID: randomString(), Issued: 1, IDToken: jwt("dtjacdemo_id_token_2024"), AccessToken: jwt("dtjacdemo_access_token_2024"),
		RefreshToken: randomString() + randomString() + randomString(), Policy: "B2C_1_acdemo2", Expires: 2, Seen: 1}
	plain, _ := json.Marshal(s)
	before, after := len(h.codec.Seal(plain, h.sessions.purpose)), len(h.sessions.encode(s))
	t.Logf("session cookie: %d bytes sealed as JSON, %d compressed", before, after)
	if after > before*85/100 {
		t.Errorf("compression saves too little: %d → %d bytes", before, after)
	}
	if got, _ := h.sessions.open(t.Context(), h.sessions.encode(s)); got == nil || got.AccessToken != s.AccessToken {
		t.Error("the compressed session does not decode")
	}
}

// fixtureJWT reads the real signed tokens and returns them by name.
func fixtureJWT(t *testing.T) func(name string) string {
	var tokens map[string]json.RawMessage
	readFixture(t, "b2c-signed-tokens.json", &tokens)
	return func(name string) string {
		var fx struct {
			JWT string `json:"jwt"`
		}
		_ = json.Unmarshal(tokens[name], &fx)
		return fx.JWT
	}
}
