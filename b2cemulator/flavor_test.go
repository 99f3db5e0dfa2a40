package b2cemulator_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-b2c/caddy-b2c/internal/testcaddy"
)

// TestIdentityPlatformFlavors: External ID and Entra ID speak the
// Microsoft identity platform v2.0: no user flows in the URLs, an issuer
// with the tenant ID that differs from the discovery URL, v2.0 tokens
// (tid, preferred_username, a pairwise sub, no tfp or emails array), and
// AADSTS errors.
func TestIdentityPlatformFlavors(t *testing.T) {
	const tid = "0d5a8b3c-1111-4222-8333-944455556666"
	for _, flavor := range []string{"external_id", "entra_id"} {
		t.Run(flavor, func(t *testing.T) {
			c := startEmulator(t, "flavor "+flavor)
			var meta map[string]any
			getJSON(t, c.policyURL("", "v2.0/.well-known/openid-configuration"), &meta)
			if meta["issuer"] != c.base+"/"+tid+"/v2.0" || meta["authorization_endpoint"] != c.base+tenantPath+"/oauth2/v2.0/authorize" || meta["jwks_uri"] != c.base+tenantPath+"/discovery/v2.0/keys" {
				t.Errorf("metadata %v", meta)
			}
			if resp, _ := http.Get(c.policyURL("B2C_1_susi", "v2.0/.well-known/openid-configuration")); resp.StatusCode != http.StatusNotFound {
				t.Errorf("a B2C user-flow path answers in flavor %s: %d", flavor, resp.StatusCode)
			}

			q := c.signIn(c.authorizeURL("", url.Values{"scope": {"openid profile email offline_access"}}), "ada@contoso.example", "Passw0rd!")
			status, body := c.redeem("", codeForm(q.Get("code")))
			if status != http.StatusOK {
				t.Fatalf("token: %d %v", status, body)
			}
			// The v2.0 auth code flow's answer, not B2C's: ext_expires_in, no
			// B2C members, an access token for Microsoft Graph when only
			// OpenID scopes were asked.
			for _, m := range []string{"token_type", "scope", "expires_in", "ext_expires_in", "access_token", "refresh_token", "id_token"} {
				if body[m] == nil {
					t.Errorf("the token answer lacks %s: %v", m, keysOf(body))
				}
			}
			for _, m := range []string{"profile_info", "not_before", "id_token_expires_in", "refresh_token_expires_in", "expires_on", "resource"} {
				if body[m] != nil {
					t.Errorf("the token answer has B2C's %s", m)
				}
			}
			if at := jwtClaims(body["access_token"].(string)); at["aud"] != "https://graph.microsoft.com" || !strings.Contains(at["scp"].(string), "User.Read") {
				t.Errorf("the access token for OpenID scopes alone: %v", at)
			}
			claims := c.verify("", body["id_token"].(string), secretClient)
			if claims["ver"] != "2.0" || claims["tid"] != tid || claims["preferred_username"] != "ada@contoso.example" || claims["email"] != "ada@contoso.example" ||
				claims["oid"] == nil || claims["sub"] == claims["oid"] || claims["tfp"] != nil || claims["emails"] != nil {
				t.Errorf("v2.0 ID token claims %v", claims)
			}

			// Errors carry AADSTS codes in the identity platform's format.
			resp := c.b.Get(c.authorizeURL("", url.Values{"scope": {"openid https://contoso.onmicrosoft.com/nobody/x"}}))
			d := c.callbackParams(resp).Get("error_description")
			if !strings.HasPrefix(d, "AADSTS70011: ") || !strings.Contains(d, "\r\nTrace ID: ") {
				t.Errorf("authorize error %q", d)
			}
			status, body = c.redeem("", codeForm("not-a-code"))
			codes, _ := json.Marshal(body["error_codes"])
			if status != http.StatusBadRequest || !strings.HasPrefix(body["error_description"].(string), "AADSTS70008: ") || string(codes) != "[70008]" || body["trace_id"] == nil {
				t.Errorf("token error %d %v", status, body)
			}
		})
	}
}

// TestEntraMultiTenantMetadata: the organizations and common endpoints
// announce the {tenantid} template issuer, as Entra ID's do.
func TestEntraMultiTenantMetadata(t *testing.T) {
	c := startEmulator(t, "flavor entra_id\n\t\tmulti_tenant")
	for _, seg := range []string{"organizations", "common"} {
		var meta map[string]any
		getJSON(t, c.base+"/"+seg+"/v2.0/.well-known/openid-configuration", &meta)
		if meta["issuer"] != c.base+"/{tenantid}/v2.0" || meta["token_endpoint"] != c.base+"/"+seg+"/oauth2/v2.0/token" {
			t.Errorf("%s metadata %v", seg, meta)
		}
	}
}

// TestKeyRotationInEveryFlavor: a rotated key is published and signs the
// next tokens, whatever the platform.
func TestKeyRotationInEveryFlavor(t *testing.T) {
	for _, flavor := range []string{"b2c", "external_id", "entra_id"} {
		t.Run(flavor, func(t *testing.T) {
			c := startEmulator(t, "flavor "+flavor)
			resp := c.rotateKeys("test-admin-key", "")
			var rotated struct {
				KID string `json:"kid"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&rotated)
			resp.Body.Close()
			var jwks struct {
				Keys []map[string]any `json:"keys"`
			}
			policy := ""
			if flavor == "b2c" {
				policy = "B2C_1_susi"
			}
			getJSON(t, c.policyURL(policy, "discovery/v2.0/keys"), &jwks)
			if resp.StatusCode != http.StatusOK || rotated.KID == "" || len(jwks.Keys) != 2 {
				t.Errorf("rotation: %d %q, %d keys published", resp.StatusCode, rotated.KID, len(jwks.Keys))
			}
		})
	}
}

// TestEntraLogoutFollowsOnlyRegisteredURIs: in the Entra flavors, logout
// ends the session whatever it is sent, but goes on to
// post_logout_redirect_uri only when it is a redirect URI registered for the
// application the hint or client_id names; B2C follows any without a hint.
func TestEntraLogoutFollowsOnlyRegisteredURIs(t *testing.T) {
	for _, flavor := range []string{"external_id", "entra_id"} {
		t.Run(flavor, func(t *testing.T) {
			c := startEmulator(t, "flavor "+flavor)
			signIn := func() string {
				q := c.signIn(c.authorizeURL("", nil), "ada@contoso.example", "Passw0rd!")
				_, body := c.redeem("", codeForm(q.Get("code")))
				return body["id_token"].(string)
			}
			signedIn := func() bool { return c.b.Get(c.authorizeURL("", nil)).StatusCode == http.StatusFound }
			logout := func(q url.Values) *testcaddy.Response {
				return c.b.Get(c.policyURL("", "oauth2/v2.0/logout") + "?" + q.Encode())
			}
			for name, q := range map[string]url.Values{
				"no hint, no client_id":   {"post_logout_redirect_uri": {callback}},
				"unregistered, with hint": {"id_token_hint": {""}, "post_logout_redirect_uri": {"https://evil.example/"}},
				"unregistered, client_id": {"client_id": {secretClient}, "post_logout_redirect_uri": {"https://evil.example/"}},
			} {
				hint := signIn()
				if q.Has("id_token_hint") {
					q.Set("id_token_hint", hint)
				}
				out := logout(q)
				if out.StatusCode != http.StatusOK || out.Header.Get("Location") != "" || signedIn() {
					t.Errorf("%s: %d to %q, still signed in %v", name, out.StatusCode, out.Header.Get("Location"), signedIn())
				}
			}
			for name, q := range map[string]url.Values{
				"registered, with hint": {"id_token_hint": {""}, "post_logout_redirect_uri": {callback}, "state": {"s1"}},
				"registered, client_id": {"client_id": {secretClient}, "post_logout_redirect_uri": {callback}, "state": {"s1"}},
			} {
				hint := signIn()
				if q.Has("id_token_hint") {
					q.Set("id_token_hint", hint)
				}
				out := logout(q)
				if out.StatusCode != http.StatusFound || out.Header.Get("Location") != callback+"?state=s1" || signedIn() {
					t.Errorf("%s: %d to %q", name, out.StatusCode, out.Header.Get("Location"))
				}
			}
		})
	}
}

// jwtClaims decodes a JWT's payload, unverified.
func jwtClaims(jwt string) map[string]any {
	parts := strings.Split(jwt, ".")
	var m map[string]any
	if len(parts) == 3 {
		payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
		_ = json.Unmarshal(payload, &m)
	}
	return m
}

// TestSelfServicePasswordResetInTheFlow: a B2C sign-up and sign-in user
// flow with self-service password reset resets the password inside the
// flow and signs the user in (the app sees a code, not AADB2C90118); one
// without it still answers AADB2C90118.
func TestSelfServicePasswordResetInTheFlow(t *testing.T) {
	c := startEmulator(t, "policies B2C_1_susi B2C_1_legacy B2C_1_reset\n\t\tself_service_password_reset B2C_1_susi")
	page := c.b.Get(c.authorizeURL("B2C_1_susi", nil))
	reset := c.b.Get(testcaddy.Link(t, page, "forgotPassword"))
	if reset.StatusCode != http.StatusOK || !strings.Contains(reset.Body, "Reset your password") {
		t.Fatalf("Forgot your password? in a flow with self-service reset: %d", reset.StatusCode)
	}
	q := c.callbackParams(c.b.SubmitVerified(reset, "ada@contoso.example", map[string]string{"password": "N3wPassword", "password_confirm": "N3wPassword"}))
	status, body := c.redeem("B2C_1_susi", codeForm(q.Get("code")))
	if status != http.StatusOK || c.verify("B2C_1_susi", body["id_token"].(string), secretClient)["tfp"] != "B2C_1_susi" {
		t.Fatalf("after the reset in the flow: %d %v", status, body)
	}
	c.b = testcaddy.NewBrowser(t)
	page = c.b.Get(c.authorizeURL("B2C_1_legacy", nil))
	if q := c.callbackParams(c.b.Get(testcaddy.Link(t, page, "forgotPassword"))); !strings.HasPrefix(q.Get("error_description"), "AADB2C90118: ") {
		t.Errorf("a flow without it: %v", q)
	}
}

// TestPromptCreateOnExternalID: External ID's prompt=create shows the
// sign-up page at once; the other flavors refuse the value as theirs do.
func TestPromptCreateOnExternalID(t *testing.T) {
	c := startEmulator(t, "flavor external_id")
	page := c.b.Get(c.authorizeURL("", url.Values{"prompt": {"create"}}))
	if page.StatusCode != http.StatusOK || !strings.Contains(page.Body, "Create your account") {
		t.Fatalf("prompt=create on External ID: %d", page.StatusCode)
	}
	q := c.callbackParams(c.b.SubmitVerified(page, "grace@example.org", map[string]string{"password": "Hopper1906", "password_confirm": "Hopper1906", "name": "Grace Hopper"}))
	if status, body := c.redeem("", codeForm(q.Get("code"))); status != http.StatusOK {
		t.Errorf("after signing up: %d %v", status, body)
	}
	b2c := startEmulator(t, "")
	if q := b2c.callbackParams(b2c.b.Get(b2c.authorizeURL("B2C_1_susi", url.Values{"prompt": {"create"}}))); q.Get("error") != "invalid_request" {
		t.Errorf("prompt=create on B2C: %v", q)
	}
}

// TestUnknownTenant: a tenant the emulator is not gets each service's
// answer — B2C's 404 page, the identity platform's AADSTS90002 — not an
// empty 200 from the next handler.
func TestUnknownTenant(t *testing.T) {
	for flavor, path := range map[string]string{"b2c": "/fabrikam.onmicrosoft.com/B2C_1_susi/v2.0/.well-known/openid-configuration", "entra_id": "/fabrikam.onmicrosoft.com/v2.0/.well-known/openid-configuration"} {
		c := startEmulator(t, "flavor "+flavor)
		resp, err := http.Get(c.base + path)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		switch flavor {
		case "b2c":
			if resp.StatusCode != http.StatusNotFound {
				t.Errorf("b2c: an unknown tenant: %d", resp.StatusCode)
			}
		default:
			if d, _ := body["error_description"].(string); resp.StatusCode != http.StatusBadRequest || body["error"] != "invalid_tenant" || !strings.HasPrefix(d, "AADSTS90002: Tenant 'fabrikam.onmicrosoft.com' not found.") {
				t.Errorf("%s: an unknown tenant: %d %v", flavor, resp.StatusCode, body)
			}
		}
	}
}

// TestSecondFactorForAuthContexts: in the Entra flavors, a claims request
// for an authentication context a policy targets (auth_contexts) asks for
// a one-time code after the password, and the tokens carry the context in
// acrs; a context no policy targets is given without one; the session
// that gave the code is not asked again; max_age older than the last
// authentication shows the sign-in page again.
func TestSecondFactorForAuthContexts(t *testing.T) {
	c := startEmulator(t, "flavor entra_id\n\t\tauth_contexts c1")
	ask := func(extra url.Values) *testcaddy.Response { return c.b.Get(c.authorizeURL("", extra)) }
	tokens := func(q url.Values) map[string]any {
		status, body := c.redeem("", codeForm(q.Get("code")))
		if status != http.StatusOK {
			t.Fatalf("token: %d %v", status, body)
		}
		return c.verify("", body["id_token"].(string), secretClient)
	}
	c1 := url.Values{"claims": {`{"id_token":{"acrs":{"essential":true,"value":"c1"}}}`}}
	page := c.b.Submit(ask(c1), map[string]string{"email": "ada@contoso.example", "password": "Passw0rd!"})
	id := tokens(c.callbackParams(c.b.SubmitSecondFactor(page, "ada@contoso.example")))
	if acrs, _ := id["acrs"].([]any); len(acrs) != 1 || acrs[0] != "c1" {
		t.Errorf("after the second factor: acrs %v", id["acrs"])
	}
	// The session gave it: not asked again.
	if again := tokens(c.callbackParams(ask(c1))); again["acrs"] == nil {
		t.Errorf("the same session, c1 again: %v", again["acrs"])
	}
	// A context no policy targets: given without a code.
	fresh := startEmulator(t, "flavor entra_id\n\t\tauth_contexts c1")
	c.b, c.base = fresh.b, fresh.base
	q := c.signIn(c.authorizeURL("", url.Values{"claims": {`{"id_token":{"acrs":{"essential":true,"value":"c2"}}}`}}), "ada@contoso.example", "Passw0rd!")
	if id := tokens(q); id["acrs"] == nil {
		t.Errorf("an untargeted context: acrs %v", id["acrs"])
	}
	// max_age: the last authentication is older than it allows.
	if r := ask(url.Values{"max_age": {"0"}}); r.StatusCode != http.StatusOK || !strings.Contains(r.Body, `id="localAccountForm"`) {
		t.Errorf("max_age=0 with a session: %d, want the sign-in page", r.StatusCode)
	}
	if r := ask(url.Values{"max_age": {"3600"}}); r.StatusCode != http.StatusFound {
		t.Errorf("max_age=3600 with a fresh session: %d, want single sign-on", r.StatusCode)
	}
}

// TestMFAPolicy: a B2C policy in mfa_policies asks for the one-time code
// after the password; the sign-up and sign-in flow does not.
func TestMFAPolicy(t *testing.T) {
	c := startEmulator(t, "policies B2C_1_susi B2C_1A_MFA\n\t\tmfa_policies B2C_1A_MFA")
	c.signIn(c.authorizeURL("B2C_1_susi", nil), "ada@contoso.example", "Passw0rd!")
	c.b = testcaddy.NewBrowser(t)
	page := c.b.Submit(c.b.Get(c.authorizeURL("B2C_1A_MFA", nil)), map[string]string{"email": "ada@contoso.example", "password": "Passw0rd!"})
	q := c.callbackParams(c.b.SubmitSecondFactor(page, "ada@contoso.example"))
	_, body := c.redeem("B2C_1A_MFA", codeForm(q.Get("code")))
	if claims := c.verify("B2C_1A_MFA", body["id_token"].(string), secretClient); claims["tfp"] != "B2C_1A_MFA" {
		t.Errorf("the MFA policy's token: %v", claims)
	}
}
