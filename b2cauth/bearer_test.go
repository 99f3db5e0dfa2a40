package b2cauth

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// accessClaims are an access token's claims that pass every check.
func accessClaims(p *hostile) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": p.issuer, "aud": testClient, "sub": "user-1", "oid": "user-1", "azp": "spa-client",
		"exp": now.Add(time.Hour).Unix(), "nbf": now.Unix(), "iat": now.Unix(),
		"scp": "demo.read demo.write", "tfp": "B2C_1_susi", "emails": []string{"ada@contoso.example"},
	}
}

func apiRequest(auth string) *http.Request {
	req := httptest.NewRequest("GET", "/api/items", nil)
	req.Header.Set("Accept", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return req
}

func TestBearerTokens(t *testing.T) {
	h, p, good := setup(t, func(h *Handler) { h.RequireScopes = []string{"demo.read"} })
	evil := newSigner(t, "good")
	with := func(change func(map[string]any)) map[string]any {
		c := accessClaims(p)
		change(c)
		return c
	}
	valid := good.sign(t, accessClaims(p))

	res := serve(h, apiRequest("Bearer "+valid))
	if !res.reachedNext {
		t.Fatalf("valid token refused: %d %s", res.Code, res.Body)
	}
	if id, _ := res.repl.GetString("http.auth.user.id"); id != "user-1" {
		t.Errorf("{http.auth.user.id} = %q", id)
	}
	if scp, _ := res.repl.GetString("http.auth.user.scp"); scp != "demo.read demo.write" {
		t.Errorf("{http.auth.user.scp} = %q", scp)
	}

	cases := []struct {
		name   string
		header string
		status int
		errStr string
	}{
		{"wrong audience", "Bearer " + good.sign(t, with(func(c map[string]any) { c["aud"] = "other-api" })), 401, `error="invalid_token"`},
		{"missing scope", "Bearer " + good.sign(t, with(func(c map[string]any) { c["scp"] = "demo.write" })), 403, `error="insufficient_scope"`},
		{"expired", "Bearer " + good.sign(t, with(func(c map[string]any) { c["exp"] = time.Now().Add(-2 * time.Hour).Unix() })), 401, `error="invalid_token"`},
		{"bad signature", "Bearer " + evil.sign(t, accessClaims(p)), 401, `error="invalid_token"`},
		{"alg none", "Bearer " + unsigned(map[string]any{"alg": "none", "kid": "good"}, accessClaims(p), ""), 401, `error="invalid_token"`},
		{"hmac with the public key", "Bearer " + hmacWithPublicKey(t, good, accessClaims(p)), 401, `error="invalid_token"`},
		{"another issuer", "Bearer " + good.sign(t, with(func(c map[string]any) { c["iss"] = "https://login.evil.example/v2.0/" })), 401, `error="invalid_token"`},
		{"garbage", "Bearer garbage", 401, `error="invalid_token"`},
		{"garbage with dots", "Bearer a.b.c", 401, `error="invalid_token"`},
		{"empty", "Bearer ", 401, `error="invalid_token"`},
		{"huge", "Bearer " + strings.Repeat("a", 100_000) + ".b.c", 401, `error="invalid_token"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := serve(h, apiRequest(tc.header))
			if res.reachedNext || res.Code != tc.status || !strings.Contains(res.Header().Get("WWW-Authenticate"), tc.errStr) {
				t.Errorf("got %d %q, want %d %s", res.Code, res.Header().Get("WWW-Authenticate"), tc.status, tc.errStr)
			}
			if res.Header().Get("Location") != "" {
				t.Error("an API request was redirected")
			}
		})
	}
}

func TestSpoofedIdentityHeadersNeverReachUpstream(t *testing.T) {
	for _, mode := range []string{"signed out, unauthenticated allow", "signed in", "signed in, easy_auth_headers"} {
		t.Run(mode, func(t *testing.T) {
			h, p, s := setup(t, func(h *Handler) {
				h.Unauthenticated = "allow"
				h.EasyAuthHeaders = strings.Contains(mode, "easy_auth")
			})
			req := httptest.NewRequest("GET", "/", nil)
			if strings.HasPrefix(mode, "signed in") {
				req.Header.Set("Authorization", "Bearer "+s.sign(t, accessClaims(p)))
			}
			for _, h := range []string{"X-MS-CLIENT-PRINCIPAL", "x-ms-client-principal-id", "X-Ms-Client-Principal-Name", "X-MS-CLIENT-PRINCIPAL-IDP", "X-MS-TOKEN-AAD-ID-TOKEN"} {
				req.Header.Set(h, "attacker")
			}
			// Names a CGI or PHP app reads as the same (HTTP_X_MS_…).
			for _, h := range []string{"X_MS_CLIENT_PRINCIPAL_ID", "x.ms.client.principal.name", "X-Ms_Token_Aad_Id_Token"} {
				req.Header[h] = []string{"attacker"}
			}
			res := serve(h, req)
			if !res.reachedNext {
				t.Fatalf("%d", res.Code)
			}
			for k, v := range res.upstream {
				if strings.HasPrefix(asCGIReadsIt(k), "HTTP_X_MS_") && v[0] == "attacker" {
					t.Errorf("spoofed %s reached upstream", k)
				}
			}
			if h.EasyAuthHeaders {
				if res.upstream.Get("X-MS-CLIENT-PRINCIPAL-ID") != "user-1" || res.upstream.Get("X-MS-CLIENT-PRINCIPAL-NAME") != "ada@contoso.example" || res.upstream.Get("X-MS-CLIENT-PRINCIPAL-IDP") != "aad" {
					t.Errorf("Easy Auth headers: %v", res.upstream)
				}
				raw, err := base64.StdEncoding.DecodeString(res.upstream.Get("X-MS-CLIENT-PRINCIPAL"))
				var principal struct {
					AuthTyp string `json:"auth_typ"`
					Claims  []struct{ Typ, Val string }
					NameTyp string `json:"name_typ"`
					RoleTyp string `json:"role_typ"`
				}
				if err != nil || json.Unmarshal(raw, &principal) != nil || principal.AuthTyp != "aad" || !strings.HasSuffix(principal.NameTyp, "/claims/name") {
					t.Fatalf("X-MS-CLIENT-PRINCIPAL %q", raw)
				}
				found := false
				for _, c := range principal.Claims {
					if c.Typ == claimTypeOID && c.Val == "user-1" {
						found = true
					}
				}
				if !found {
					t.Errorf("oid not mapped to %s: %s", claimTypeOID, raw)
				}
			}
		})
	}
}

func TestAuthMe(t *testing.T) {
	h, p, s := setup(t, nil)
	res := serve(h, httptest.NewRequest("GET", "/.auth/me", nil))
	if res.Code != http.StatusUnauthorized {
		t.Errorf("signed out /.auth/me: %d", res.Code)
	}
	cookies := signedIn(t, h, p, s, nil)
	res = serve(h, withCookies(httptest.NewRequest("GET", "/.auth/me", nil), cookies))
	var me []struct {
		ProviderName string                      `json:"provider_name"`
		UserID       string                      `json:"user_id"`
		IDToken      string                      `json:"id_token"`
		UserClaims   []struct{ Typ, Val string } `json:"user_claims"`
	}
	if err := json.Unmarshal(res.Body.Bytes(), &me); err != nil || len(me) != 1 {
		t.Fatalf("/.auth/me: %d %s", res.Code, res.Body)
	}
	if me[0].ProviderName != "aad" || me[0].UserID != "ada@contoso.example" || me[0].IDToken == "" || len(me[0].UserClaims) < 5 {
		t.Errorf("/.auth/me %+v", me[0])
	}
}

func TestRulesAcrossBlocks(t *testing.T) {
	_, p, s := setup(t, nil)
	admin := newTestHandler(t, p, func(h *Handler) {
		h.Allow = []Rule{{Claim: "extension_Role", Patterns: []string{"admin"}}}
	})
	for _, tc := range []struct {
		role   string
		accept string
		status int
	}{{"admin", "text/html", 200}, {"reader", "text/html", 403}, {"reader", "application/json", 403}} {
		claims := accessClaims(p)
		claims["extension_Role"] = tc.role
		req := apiRequest("Bearer " + s.sign(t, claims))
		req.Header.Set("Accept", tc.accept)
		res := serve(admin, req)
		if res.Code != tc.status {
			t.Errorf("role %s: %d, want %d", tc.role, res.Code, tc.status)
		}
		if tc.status == 403 && tc.accept == "application/json" && !strings.HasPrefix(res.Header().Get("Content-Type"), "application/json") {
			t.Errorf("403 for an API request is not JSON: %q", res.Header().Get("Content-Type"))
		}
	}
}

// TestAdditionalIssuers: bearer tokens of another issuer (here Entra ID's
// v1.0 access tokens, iss https://sts.windows.net/<tid>/ and an api://
// audience) are accepted when listed, with that issuer's own keys only.
func TestAdditionalIssuers(t *testing.T) {
	v1 := newHostile(t)
	v1Key := newSigner(t, "v1-key")
	v1.set(func(p *hostile) {
		p.issuer = "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/"
		p.keys = []jose.JSONWebKey{v1Key.jwk()}
	})
	v1Token := func(s signer) string {
		c := accessClaims(v1)
		c["aud"], c["ver"] = "api://tasks", "1.0"
		delete(c, "tfp")
		return s.sign(t, c)
	}
	without, p, mainKey := setup(t, func(h *Handler) { h.Audience = []string{testClient, "api://tasks"} })
	if res := serve(without, apiRequest("Bearer "+v1Token(v1Key))); res.reachedNext {
		t.Fatal("a token of an issuer that is not listed was accepted")
	}
	for name, extra := range map[string]AdditionalIssuer{
		"metadata":        {Metadata: v1.srv.URL + "/contoso.onmicrosoft.com/B2C_1_susi/v2.0/.well-known/openid-configuration"},
		"issuer and keys": {Issuer: "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/", JWKSURI: v1.srv.URL + "/keys"},
	} {
		t.Run(name, func(t *testing.T) {
			h := newTestHandler(t, p, func(h *Handler) {
				h.Audience = []string{testClient, "api://tasks"}
				h.AdditionalIssuers = []AdditionalIssuer{extra}
			})
			if res := serve(h, apiRequest("Bearer "+v1Token(v1Key))); !res.reachedNext {
				t.Errorf("the additional issuer's token: %d %s", res.Code, res.Body)
			}
			// Claiming the additional issuer is not enough: its keys decide.
			if res := serve(h, apiRequest("Bearer "+v1Token(mainKey))); res.reachedNext {
				t.Error("a token with the additional issuer's iss, signed by another key, was accepted")
			}
			// The main issuer's tokens still work.
			if res := serve(h, apiRequest("Bearer "+mainKey.sign(t, accessClaims(p)))); !res.reachedNext {
				t.Errorf("the main issuer's token: %d", res.Code)
			}
		})
	}
}

// asCGIReadsIt is a header's name as a CGI or PHP app gets it: upper case,
// dashes and dots as underscores, after HTTP_.
func asCGIReadsIt(header string) string {
	return "HTTP_" + strings.NewReplacer("-", "_", ".", "_").Replace(strings.ToUpper(header))
}
