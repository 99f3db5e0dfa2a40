package b2cauth

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// entraClaims are an Entra ID v2.0 token's claims; kind "id" or "access".
func entraClaims(p *hostile, kind string) map[string]any {
	now := time.Now()
	c := map[string]any{
		"iss": p.issuer, "aud": testClient, "sub": "pairwise-sub", "oid": "11111111-2222-3333-4444-555555555555",
		"tid": "f06c2fe8-709f-4030-85dc-38a4bfd9e82d", "exp": now.Add(time.Hour).Unix(), "nbf": now.Unix(), "iat": now.Unix(),
		"ver": "2.0", "name": "Ada", "preferred_username": "ada@contoso.example",
	}
	if kind == "id" {
		c["nonce"] = "the-sign-in-nonce"
	} else {
		c["azp"] = "spa-client"
	}
	return c
}

func bearerResult(h *Handler, token string) result {
	return serve(h, apiRequest("Bearer "+token))
}

// TestIDTokensNeverOpenTheAPI: an ID token, valid in every other way (its
// aud is the client ID, which audience accepts by default), is refused as
// a bearer credential, on B2C and on Entra ID, with and without roles.
func TestIDTokensNeverOpenTheAPI(t *testing.T) {
	t.Run("b2c", func(t *testing.T) {
		h, p, s := setup(t, nil)
		id := goodClaims(p, "a-nonce")
		id["auth_time"] = time.Now().Unix()
		withRoles := goodClaims(p, "a-nonce")
		withRoles["auth_time"], withRoles["roles"], withRoles["scp"] = time.Now().Unix(), []string{"Admin"}, "demo.read"
		for name, claims := range map[string]map[string]any{"ID token": id, "ID token with roles and scp": withRoles} {
			if res := bearerResult(h, s.sign(t, claims)); res.Code != http.StatusUnauthorized || res.reachedNext ||
				!strings.Contains(res.Header().Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("%s as bearer: %d", name, res.Code)
			}
		}
		// B2C's access tokens carry the nonce too: that alone refuses nothing.
		access := accessClaims(p)
		access["nonce"] = "a-nonce"
		if res := bearerResult(h, s.sign(t, access)); !res.reachedNext {
			t.Errorf("a B2C access token with its nonce: %d", res.Code)
		}
	})
	t.Run("entra", func(t *testing.T) {
		h, p, s := entraSite(t, nil)
		id := entraClaims(p, "id")
		id["roles"] = []string{"Admin"} // Entra puts assigned app roles in ID tokens too
		noNonce := entraClaims(p, "id")
		delete(noNonce, "nonce")
		noNonce["roles"] = []string{"Admin"}
		for name, claims := range map[string]map[string]any{"ID token with roles": id, "ID token with roles, without nonce": noNonce} {
			if res := bearerResult(h, s.sign(t, claims)); res.Code != http.StatusUnauthorized || res.reachedNext {
				t.Errorf("%s as bearer: %d", name, res.Code)
			}
		}
		access := entraClaims(p, "access")
		access["scp"] = "Tasks.Read"
		if res := bearerResult(h, s.sign(t, access)); !res.reachedNext {
			t.Errorf("an Entra access token: %d %s", res.Code, res.Header().Get("WWW-Authenticate"))
		}
	})
}

// entraSite is entraSetup with the issuer pointed at the hostile provider.
func entraSite(t *testing.T, change func(*Handler)) (*Handler, *hostile, signer) {
	p := newHostile(t)
	s := newSigner(t, "good")
	p.set(func(p *hostile) { p.keys = append(p.keys, s.jwk()) })
	return entraOn(t, p, change), p, s
}

// TestAccessTokensNeedAPermission: a token with neither scp nor roles
// opens nothing, except B2C's access token for the app's own client ID,
// which B2C documents for calling "your own service or web API".
func TestAccessTokensNeedAPermission(t *testing.T) {
	h, p, s := entraSite(t, nil)
	bare := entraClaims(p, "access")
	if res := bearerResult(h, s.sign(t, bare)); res.Code != http.StatusUnauthorized {
		t.Errorf("an Entra token with neither scp nor roles: %d", res.Code)
	}

	b2c, bp, bs := setup(t, nil)
	own := accessClaims(bp)
	delete(own, "scp")
	own["azp"], own["nonce"] = testClient, "n" // asked for with the client ID as a scope
	if res := bearerResult(b2c, bs.sign(t, own)); !res.reachedNext {
		t.Errorf("B2C's own-client access token: %d", res.Code)
	}
	other := accessClaims(bp)
	delete(other, "scp") // issued to another client: not this app's own token
	if res := bearerResult(b2c, bs.sign(t, other)); res.Code != http.StatusUnauthorized {
		t.Errorf("a B2C token without scp for another client: %d", res.Code)
	}
	noAzp := accessClaims(bp)
	delete(noAzp, "azp")
	if res := bearerResult(b2c, bs.sign(t, noAzp)); res.Code != http.StatusUnauthorized {
		t.Errorf("a B2C token naming no client: %d", res.Code)
	}
}

// TestRequireScopesOrRoles: require_scopes names delegated permissions,
// require_roles application permissions; either list satisfied suffices,
// else 403 insufficient_scope naming what is missing.
func TestRequireScopesOrRoles(t *testing.T) {
	h, p, s := entraSite(t, func(h *Handler) {
		h.RequireScopes = []string{"Tasks.Read"}
		h.RequireRoles = []string{"Tasks.Read.All"}
	})
	user := entraClaims(p, "access")
	user["scp"] = "Tasks.Read Tasks.Write"
	daemon := entraClaims(p, "access")
	daemon["roles"] = []string{"Tasks.Read.All"}
	daemon["oid"], daemon["sub"] = "99999999-0000-0000-0000-000000000001", "99999999-0000-0000-0000-000000000001"
	delete(daemon, "name")
	delete(daemon, "preferred_username")
	for name, claims := range map[string]map[string]any{"delegated scope": user, "application role": daemon} {
		res := bearerResult(h, s.sign(t, claims))
		if !res.reachedNext {
			t.Errorf("%s: %d %s", name, res.Code, res.Header().Get("WWW-Authenticate"))
		}
	}
	if res := bearerResult(h, s.sign(t, daemon)); res.placeholder("type") != "app" || res.placeholder("id") != "99999999-0000-0000-0000-000000000001" || res.placeholder("roles") != "Tasks.Read.All" {
		t.Errorf("an app-only caller: type %q id %q roles %q", res.placeholder("type"), res.placeholder("id"), res.placeholder("roles"))
	}
	if res := bearerResult(h, s.sign(t, user)); res.placeholder("type") != "user" {
		t.Errorf("a user's token: type %q", res.placeholder("type"))
	}

	wrongScope := entraClaims(p, "access")
	wrongScope["scp"] = "Tasks.Write"
	wrongRole := entraClaims(p, "access")
	wrongRole["roles"] = []string{"Other.All"}
	for name, claims := range map[string]map[string]any{"another scope": wrongScope, "another role": wrongRole} {
		res := bearerResult(h, s.sign(t, claims))
		challenge := res.Header().Get("WWW-Authenticate")
		if res.Code != http.StatusForbidden || res.reachedNext || !strings.Contains(challenge, `error="insufficient_scope"`) ||
			!strings.Contains(challenge, `scope="Tasks.Read"`) || !strings.Contains(challenge, "Tasks.Read.All") {
			t.Errorf("%s: %d %s", name, res.Code, challenge)
		}
	}

	// Only roles required: a scope does not do.
	rolesOnly, rp, rs := entraSite(t, func(h *Handler) { h.RequireRoles = []string{"Tasks.Read.All"} })
	scoped := entraClaims(rp, "access")
	scoped["scp"] = "Tasks.Read.All"
	if res := bearerResult(rolesOnly, rs.sign(t, scoped)); res.Code != http.StatusForbidden {
		t.Errorf("require_roles with the value in scp: %d", res.Code)
	}
}

// TestB2CAppOnlyTokens: Azure AD B2C's client-credentials tokens carry the
// application permissions in scp (its documented shape: aud, sub the
// calling app's service principal, azp, scp), so require_scopes matches
// them; they are app identities.
func TestB2CAppOnlyTokens(t *testing.T) {
	h, p, s := setup(t, func(h *Handler) { h.RequireScopes = []string{"app.read"} })
	now := time.Now()
	daemon := map[string]any{
		"iss": p.issuer, "aud": testClient, "sub": "5ea1f1e0-0000-4000-8000-00000000d43e", "azp": "daemon-client",
		"scp": "app.read app.write", "exp": now.Add(time.Hour).Unix(), "nbf": now.Unix(), "iat": now.Unix(), "ver": "1.0",
	}
	res := bearerResult(h, s.sign(t, daemon))
	if !res.reachedNext || res.placeholder("type") != "app" || res.placeholder("id") != "5ea1f1e0-0000-4000-8000-00000000d43e" {
		t.Errorf("a B2C app-only token: %d type %q id %q", res.Code, res.placeholder("type"), res.placeholder("id"))
	}
	if res := bearerResult(h, s.sign(t, accessClaims(p))); res.Code != http.StatusForbidden {
		t.Errorf("a user token without app.read: %d", res.Code)
	}
}

// TestRolesAndGroupsInRules: app roles and groups from the token reach
// the rules and the placeholders.
func TestRolesAndGroupsInRules(t *testing.T) {
	h, p, s := entraSite(t, func(h *Handler) {
		h.Allow = []Rule{{Claim: "roles", Patterns: []string{"Admin"}}, {Claim: "groups", Patterns: []string{"0f4c2d5e-0000-4000-8000-00000000a11a"}}}
	})
	admin := entraClaims(p, "access")
	admin["scp"], admin["roles"] = "Tasks.Read", []string{"Reader", "Admin"}
	member := entraClaims(p, "access")
	member["scp"], member["groups"] = "Tasks.Read", []string{"0f4c2d5e-0000-4000-8000-00000000a11a", "other"}
	nobody := entraClaims(p, "access")
	nobody["scp"], nobody["roles"], nobody["groups"] = "Tasks.Read", []string{"Reader"}, []string{"other"}

	if res := bearerResult(h, s.sign(t, admin)); !res.reachedNext || res.placeholder("roles") != "Reader,Admin" || res.placeholder("groups") != "" {
		t.Errorf("allow roles Admin: %d roles %q groups %q", res.Code, res.placeholder("roles"), res.placeholder("groups"))
	}
	if res := bearerResult(h, s.sign(t, member)); !res.reachedNext || res.placeholder("groups") != "0f4c2d5e-0000-4000-8000-00000000a11a,other" {
		t.Errorf("allow groups <id>: %d groups %q", res.Code, res.placeholder("groups"))
	}
	if res := bearerResult(h, s.sign(t, nobody)); res.Code != http.StatusForbidden {
		t.Errorf("neither the role nor the group: %d", res.Code)
	}
}

// corsPreflight is a browser's CORS preflight for GET /api/items.
func corsPreflight(change func(*http.Request)) *http.Request {
	req := apiRequest("")
	req.Method = http.MethodOptions
	req.Header.Set("Origin", "https://spa.example")
	req.Header.Set("Access-Control-Request-Method", "GET")
	req.Header.Set("Access-Control-Request-Headers", "authorization")
	if change != nil {
		change(req)
	}
	return req
}

// TestCORSPreflightIsNoBypass: the attack — any client (not only a
// browser) sends OPTIONS with Origin and Access-Control-Request-Method,
// with a body and X-HTTP-Method-Override: POST, and reaches the protected
// handler (respond's secret, a PHP script, an upstream that honours the
// override) with no session. By default a preflight is authenticated like
// any request: 401, and nothing reaches the app.
func TestCORSPreflightIsNoBypass(t *testing.T) {
	h, _, _ := setup(t, nil)
	for name, req := range map[string]*http.Request{
		"a preflight": corsPreflight(nil),
		"a preflight with a body and a method override": corsPreflight(func(r *http.Request) {
			r.Body, r.ContentLength = io.NopCloser(strings.NewReader("delete=everything")), 17
			r.Header.Set("X-HTTP-Method-Override", "DELETE")
		}),
	} {
		if res := serve(h, req); res.reachedNext || res.Code != http.StatusUnauthorized {
			t.Errorf("%s, by default: %d, reached the app %v", name, res.Code, res.reachedNext)
		}
	}
}

// TestCORSPreflightPassWhenTheSiteOptsIn: with cors_preflight pass, a real
// preflight reaches the app unauthenticated — without a body or a
// method-override header, which a browser's preflight never has — so that
// the app can answer it; anything else that looks like one is
// authenticated.
func TestCORSPreflightPassWhenTheSiteOptsIn(t *testing.T) {
	h, _, _ := setup(t, func(h *Handler) { h.CORSPreflight = "pass" })
	var seenBody []byte
	var seenOverride string
	pass := func(req *http.Request) bool {
		reached := false
		ctx := context.WithValue(req.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
		ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{})
		_ = h.ServeHTTP(httptest.NewRecorder(), req.WithContext(ctx), caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			reached = true
			seenBody, _ = io.ReadAll(r.Body)
			seenOverride = r.Header.Get("X-HTTP-Method-Override")
			return nil
		}))
		return reached
	}
	if !pass(corsPreflight(nil)) {
		t.Error("a CORS preflight did not reach the app")
	}
	if !pass(corsPreflight(func(r *http.Request) { r.Header.Set("X-HTTP-Method-Override", "DELETE") })) || seenOverride != "" {
		t.Errorf("a preflight reached the app with X-HTTP-Method-Override %q", seenOverride)
	}
	if len(seenBody) != 0 {
		t.Errorf("a preflight reached the app with a body %q", seenBody)
	}
	for name, change := range map[string]func(*http.Request){
		"a plain OPTIONS request":             func(r *http.Request) { r.Header.Del("Access-Control-Request-Method") },
		"an OPTIONS request with credentials": func(r *http.Request) { r.Header.Set("Authorization", "Bearer x.y.z") },
		"an OPTIONS request with a body": func(r *http.Request) {
			r.Body, r.ContentLength = io.NopCloser(strings.NewReader("x=1")), 3
		},
	} {
		if res := serve(h, corsPreflight(change)); res.reachedNext {
			t.Errorf("%s passed unauthenticated", name)
		}
	}
	if res := serve(h, apiRequest("")); res.Code != http.StatusUnauthorized {
		t.Errorf("the real request without a token: %d", res.Code)
	}
}

// placeholder is {http.auth.user.<name>} as the request left it.
func (r result) placeholder(name string) string {
	v, _ := r.repl.GetString("http.auth.user." + name)
	return v
}
