package b2cauth

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestIssuerWithAppID: Entra ID's metadata for an app whose tokens are
// signed with claims-mapping keys is asked for with ?appid=<client id>
// (access-tokens.md, "Validate the signature"); no other query is taken.
func TestIssuerWithAppID(t *testing.T) {
	h, p, _ := entraSite(t, func(h *Handler) { h.Issuer += "?appid=" + testClient })
	serve(h, navigation("GET", "/"))
	p.set(func(p *hostile) {
		if !slices.Contains(p.metaQueries, "appid="+testClient) {
			t.Errorf("metadata requests: %v, want one with appid", p.metaQueries)
		}
	})
	bad := &Handler{Issuer: "https://login.microsoftonline.com/" + testClient + "/v2.0?p=B2C_1_x", ClientID: "x"}
	if err := bad.checkConfig(); err == nil || !strings.Contains(err.Error(), "appid") {
		t.Errorf("another query in issuer: %v", err)
	}
}

// TestPromptPerPlatform: /.auth/login passes on the prompt values each
// platform documents: B2C only login; Entra ID select_account and consent
// too; External ID also create; none never (the sign-in is interactive).
func TestPromptPerPlatform(t *testing.T) {
	sent := func(h *Handler, prompt string) string {
		res := serve(h, navigation("GET", "/.auth/login?prompt="+prompt))
		loc, _ := url.Parse(res.Header().Get("Location"))
		return loc.Query().Get("prompt")
	}
	b2c, _, _ := setup(t, nil)
	entra, _, _ := entraSite(t, nil)
	for _, tc := range []struct {
		h            *Handler
		name, prompt string
		want         string
	}{
		{b2c, "b2c", "login", "login"},
		{b2c, "b2c", "select_account", ""},
		{entra, "entra", "select_account", "select_account"},
		{entra, "entra", "consent", "consent"},
		{entra, "entra", "none", ""},
		{entra, "entra", "create", ""},
	} {
		if got := sent(tc.h, tc.prompt); got != tc.want {
			t.Errorf("%s prompt=%s: sent %q, want %q", tc.name, tc.prompt, got, tc.want)
		}
	}
	externalID := &Handler{ExternalID: "contoso"}
	externalID.platform = externalID.platformOf()
	if !slices.Contains(externalID.prompts(), "create") {
		t.Error("External ID does not pass prompt=create")
	}
}

// TestPolicyOnlyFromB2C: {http.auth.user.policy} comes from tfp, or from a
// B2C custom policy's acr; Entra ID's v1 acr ("1") is not a policy.
func TestPolicyOnlyFromB2C(t *testing.T) {
	for payload, want := range map[string]string{
		`{"sub":"s","tfp":"B2C_1_susi"}`:           "B2C_1_susi",
		`{"sub":"s","acr":"b2c_1a_signup_signin"}`: "b2c_1a_signup_signin",
		`{"sub":"s","acr":"1"}`:                    "",
	} {
		id, _ := newIdentity([]byte(payload))
		if id.values["policy"] != want {
			t.Errorf("%s: policy %q, want %q", payload, id.values["policy"], want)
		}
	}
}

// TestLogoutHint: with the ID token's optional login_hint claim, Entra's
// end_session gets logout_hint, to sign the account out without asking
// which one.
func TestLogoutHint(t *testing.T) {
	h, p, s := setup(t, nil)
	cookies := signedIn(t, h, p, s, func(c map[string]any) { c["login_hint"] = "O.aXNzdWVyLW9wYXF1ZQ" })
	if loc := endSession(t, logoutWith(h, "", cookies)); loc.Query().Get("logout_hint") != "O.aXNzdWVyLW9wYXF1ZQ" {
		t.Errorf("end_session without logout_hint: %s", loc)
	}
	plain := signedIn(t, h, p, s, nil)
	if loc := endSession(t, logoutWith(h, "", plain)); loc.Query().Has("logout_hint") || loc.Query().Get("id_token_hint") == "" {
		t.Errorf("without login_hint: %s", loc)
	}
}

// TestUserInfoOnlyWhereItAddsClaims: an ID token without email, scopes
// that promise one and a userinfo_endpoint make a generic provider's
// UserInfo be asked; Entra ID's (its metadata has cloud_instance_name) is
// not: its ID token is a superset of UserInfo, so the sign-in makes no
// extra round trip.
func TestUserInfoOnlyWhereItAddsClaims(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra map[string]any
		hits  int
		email string
	}{
		{"generic", nil, 1, "from-userinfo@contoso.com"},
		{"entra", map[string]any{"cloud_instance_name": "microsoftonline.com"}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, p, s := entraSite(t, nil)
			p.set(func(p *hostile) {
				p.extraMeta = map[string]any{"userinfo_endpoint": p.srv.URL + "/oidc/userinfo"}
				p.userInfoReply = `{"sub":"pairwise-sub","email":"from-userinfo@contoso.com"}`
				maps.Copy(p.extraMeta, tc.extra)
			})
			state, nonce, fc := pendingFlow(t, h, "/")
			claims := entraClaims(p, "id")
			claims["nonce"], claims["name"] = nonce, "Ada"
			body, _ := json.Marshal(map[string]any{"id_token": s.sign(t, claims), "access_token": "graph-token", "token_type": "Bearer", "expires_in": 3600})
			p.set(func(p *hostile) { p.tokenReply, p.tokenCode = string(body), 200 })
			res := serve(h, callbackRequest(state, fc, url.Values{"code": {"c"}}))
			if res.Code != http.StatusFound {
				t.Fatalf("sign-in: %d %s", res.Code, res.Body)
			}
			p.set(func(p *hostile) {
				if p.userInfoHits != tc.hits {
					t.Errorf("UserInfo asked %d times, want %d", p.userInfoHits, tc.hits)
				}
			})
			cookies := sessionCookies(res)
			after := serve(h, withCookies(navigation("GET", "/"), cookies))
			if got := after.repl.ReplaceAll("{http.auth.user.email}", ""); got != tc.email {
				t.Errorf("email %q, want %q", got, tc.email)
			}
		})
	}
}

// TestEmailRuleWarnsWithEntra: a rule on email (mutable, not verified for
// every Entra account) is named at start-up with Entra ID or External ID,
// not with B2C nor for a rule on oid or groups.
func TestEmailRuleWarnsWithEntra(t *testing.T) {
	email := []Rule{{Claim: "email", Patterns: []string{"*@contoso.com"}}}
	for _, tc := range []struct {
		h    *Handler
		want string
	}{
		{&Handler{Issuer: "https://login.microsoftonline.com/f06c2fe8-709f-4030-85dc-38a4bfd9e82d/v2.0", Allow: email}, "email"},
		{&Handler{ExternalID: "contoso", Deny: []Rule{{Claim: "preferred_username", Patterns: []string{"x*"}}}}, "preferred_username"},
		{&Handler{Issuer: "https://contoso.ciamlogin.com/contoso.onmicrosoft.com/v2.0", Allow: email}, "email"},
		{&Handler{Tenant: "contoso", Policy: "B2C_1_susi", Allow: email}, ""},
		{&Handler{Issuer: "https://accounts.example.com", Allow: email}, ""},
		{&Handler{Issuer: "https://login.microsoftonline.com/organizations/v2.0", Allow: []Rule{{Claim: "groups", Patterns: []string{"g"}}}}, ""},
	} {
		if got := tc.h.platformOf().unverifiedRuleClaim(tc.h.Allow, tc.h.Deny); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.h, got, tc.want)
		}
	}
}

// TestVerifiedEmailDomainRule: docs/authorization.md's allow email with deny
// xms_edov false admits an e-mail of a verified domain only.
func TestVerifiedEmailDomainRule(t *testing.T) {
	allow := []Rule{{Claim: "email", Patterns: []string{"*@contoso.com"}}}
	deny := []Rule{{Claim: "xms_edov", Patterns: []string{"false"}}}
	for payload, want := range map[string]bool{
		`{"email":"ada@contoso.com","xms_edov":true}`:  true,
		`{"email":"ada@contoso.com","xms_edov":false}`: false,
		`{"email":"ada@fabrikam.com","xms_edov":true}`: false,
	} {
		var claims map[string]any
		_ = json.Unmarshal([]byte(payload), &claims)
		if got := permitted(allow, deny, claims); got != want {
			t.Errorf("%s: permitted %v, want %v", payload, got, want)
		}
	}
}

// TestRolesOnB2CSaySo: B2C's user flows put no roles in tokens. An API
// that requires roles alone behind a user flow is a config error; roles
// behind a custom policy, beside require_scopes, or in an allow rule are
// named at start-up; Entra ID's roles are not.
func TestRolesOnB2CSaySo(t *testing.T) {
	roles := []Rule{{Claim: "roles", Patterns: []string{"Admin"}}}
	for _, tc := range []struct {
		h             *Handler
		fails, warned bool
	}{
		{&Handler{Tenant: "contoso", Policy: "B2C_1_susi", RequireRoles: []string{"Tasks.Read"}}, true, true},
		{&Handler{Tenant: "contoso", Policy: "b2c_1_SUSI", RequireRoles: []string{"Tasks.Read"}}, true, true},
		{&Handler{Tenant: "contoso", Policy: "B2C_1A_signup_signin", RequireRoles: []string{"Tasks.Read"}}, false, true},
		{&Handler{Tenant: "contoso", Policy: "B2C_1_susi", RequireRoles: []string{"Tasks.Read"}, RequireScopes: []string{"tasks.read"}}, false, true},
		{&Handler{Tenant: "contoso", Policy: "B2C_1_susi", Allow: roles}, false, true},
		{&Handler{Tenant: "contoso", Policy: "B2C_1_susi", RequireScopes: []string{"tasks.read"}}, false, false},
		{&Handler{Issuer: "https://login.microsoftonline.com/f06c2fe8-709f-4030-85dc-38a4bfd9e82d/v2.0", RequireRoles: []string{"Tasks.Read"}}, false, false},
	} {
		if err := tc.h.checkRolesOnB2C(); (err != nil) != tc.fails {
			t.Errorf("%+v: %v, want an error %v", tc.h, err, tc.fails)
		}
		core, logs := observer.New(zapcore.WarnLevel)
		tc.h.logger = zap.New(core)
		tc.h.warnAtStart()
		if warned := logs.FilterMessageSnippet("put no roles in tokens").Len() > 0; warned != tc.warned {
			t.Errorf("%+v: warned %v, want %v", tc.h, warned, tc.warned)
		}
	}
}
