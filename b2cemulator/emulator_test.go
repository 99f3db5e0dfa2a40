package b2cemulator_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/caddy-b2c/caddy-b2c/b2cemulator"
	"github.com/caddy-b2c/caddy-b2c/internal/testcaddy"
)

const (
	tenantPath   = "/contoso.onmicrosoft.com"
	callback     = "http://localhost:9999/cb"
	secretClient = "11111111-2222-3333-4444-555555555555"
	publicClient = "public-client"
	verifier     = "verifier-verifier-verifier-verifier-verifier-0123456789"
)

// rp is a relying party driving the emulator as B2C's clients do.
type rp struct {
	t    *testing.T
	base string // http://127.0.0.1:port
	b    *testcaddy.Browser
}

func startEmulator(t *testing.T, extra string) *rp {
	port := testcaddy.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	testcaddy.Start(t, testcaddy.Globals(t.TempDir())+fmt.Sprintf(`
%s {
	b2c_emulator {
		tenant_id 0d5a8b3c-1111-4222-8333-944455556666
		client %s s3cret {
			redirect_uri %s
		}
		client %s {
			platform spa
			redirect_uri %s
		}
		client native-app {
			redirect_uri %[3]s
		}
		user ada@contoso.example Passw0rd! {
			name "Ada Lovelace"
			given_name Ada
			family_name Lovelace
			claim extension_Role admin
		}
		admin_key test-admin-key
		%[6]s
	}
	respond "not the emulator" 404
}
`, base, secretClient, callback, publicClient, callback, extra))
	return &rp{t: t, base: base, b: testcaddy.NewBrowser(t)}
}

func (c *rp) policyURL(policy, path string) string {
	if policy == "" { // External ID and Entra ID: no user flow in the path
		return c.base + tenantPath + "/" + path
	}
	return c.base + tenantPath + "/" + policy + "/" + path
}

func (c *rp) authorizeURL(policy string, q url.Values) string {
	p := url.Values{
		"client_id":             {secretClient},
		"redirect_uri":          {callback},
		"response_type":         {"code"},
		"scope":                 {"openid offline_access"},
		"state":                 {"st4te"},
		"nonce":                 {"n0nce"},
		"code_challenge":        {s256(verifier)},
		"code_challenge_method": {"S256"},
	}
	for k, v := range q {
		p[k] = v
	}
	return c.policyURL(policy, "oauth2/v2.0/authorize") + "?" + p.Encode()
}

func s256(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// signIn posts the sign-in form and returns the callback's parameters.
func (c *rp) signIn(authURL, email, password string) url.Values {
	c.t.Helper()
	page := c.b.Get(authURL)
	if page.StatusCode != http.StatusOK || !strings.Contains(page.Body, `id="localAccountForm"`) {
		c.t.Fatalf("authorize: %d\n%s", page.StatusCode, page.Body)
	}
	resp := c.b.Submit(page, map[string]string{"email": email, "password": password})
	return c.callbackParams(resp)
}

// callbackParams reads what the emulator sent to the redirect URI.
func (c *rp) callbackParams(resp *testcaddy.Response) url.Values {
	c.t.Helper()
	if resp.StatusCode != http.StatusFound {
		c.t.Fatalf("want a redirect to the client, got %d\n%s", resp.StatusCode, resp.Body)
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, callback+"?") {
		c.t.Fatalf("redirect to %q, want %s?...", loc, callback)
	}
	q, err := url.ParseQuery(strings.TrimPrefix(loc, callback+"?"))
	if err != nil {
		c.t.Fatal(err)
	}
	return q
}

// redeem posts to the token endpoint and decodes the JSON answer.
func (c *rp) redeem(policy string, form url.Values) (int, map[string]any) {
	c.t.Helper()
	resp, err := http.PostForm(c.policyURL(policy, "oauth2/v2.0/token"), form)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		c.t.Fatalf("token answer is not JSON: %v", err)
	}
	return resp.StatusCode, body
}

func codeForm(code string) url.Values {
	return url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {callback},
		"client_id": {secretClient}, "client_secret": {"s3cret"}, "code_verifier": {verifier},
	}
}

// verify checks an ID token with go-oidc against the emulator's discovery
// document and JWKS, as a relying party would.
func (c *rp) verify(policy, rawToken, clientID string) map[string]any {
	c.t.Helper()
	var meta struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	getJSON(c.t, c.policyURL(policy, "v2.0/.well-known/openid-configuration"), &meta)
	keys := oidc.NewRemoteKeySet(context.Background(), meta.JWKSURI)
	tok, err := oidc.NewVerifier(meta.Issuer, keys, &oidc.Config{ClientID: clientID}).Verify(context.Background(), rawToken)
	if err != nil {
		c.t.Fatalf("ID token does not verify: %v", err)
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		c.t.Fatal(err)
	}
	return claims
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func errorCode(t *testing.T, body map[string]any) string {
	t.Helper()
	desc, _ := body["error_description"].(string)
	code, _, _ := strings.Cut(desc, ":")
	if !strings.HasSuffix(desc, "\r\n") || !strings.Contains(desc, "\r\nCorrelation ID: ") || !strings.Contains(desc, "\r\nTimestamp: ") {
		t.Errorf("error_description %q is not in B2C's format", desc)
	}
	return code
}

func TestDiscoveryMatchesB2CFormat(t *testing.T) {
	c := startEmulator(t, "")
	var fixture, pathForm, queryForm, guidForm map[string]any
	data, err := os.ReadFile(filepath.Join("..", "testdata", "fixtures", "b2c-openid-configuration.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &fixture); err != nil {
		t.Fatal(err)
	}
	getJSON(t, c.policyURL("B2C_1_susi", "v2.0/.well-known/openid-configuration"), &pathForm)
	getJSON(t, c.base+tenantPath+"/v2.0/.well-known/openid-configuration?p=b2c_1_SUSI", &queryForm)
	getJSON(t, c.base+"/0d5a8b3c-1111-4222-8333-944455556666/b2c_1_susi/v2.0/.well-known/openid-configuration", &guidForm)

	if got, want := keysOf(pathForm), keysOf(fixture); !reflect.DeepEqual(got, want) {
		t.Errorf("discovery members %v, B2C's are %v", got, want)
	}
	for _, doc := range []map[string]any{pathForm, queryForm, guidForm} {
		if doc["issuer"] != c.base+"/0d5a8b3c-1111-4222-8333-944455556666/v2.0/" {
			t.Errorf("issuer %v: want the tenant GUID form with a trailing slash", doc["issuer"])
		}
		for _, k := range []string{"response_modes_supported", "id_token_signing_alg_values_supported", "token_endpoint_auth_methods_supported", "subject_types_supported"} {
			if !reflect.DeepEqual(doc[k], fixture[k]) {
				t.Errorf("%s = %v, B2C says %v", k, doc[k], fixture[k])
			}
		}
	}
	if got := pathForm["authorization_endpoint"]; got != c.base+tenantPath+"/b2c_1_susi/oauth2/v2.0/authorize" {
		t.Errorf("path-form authorization_endpoint %v", got)
	}
	if got := queryForm["token_endpoint"]; got != c.base+tenantPath+"/oauth2/v2.0/token?p=b2c_1_susi" {
		t.Errorf("?p= form token_endpoint %v", got)
	}

	var jwks struct {
		Keys []map[string]any `json:"keys"`
	}
	getJSON(t, pathForm["jwks_uri"].(string), &jwks)
	if len(jwks.Keys) != 1 || jwks.Keys[0]["kty"] != "RSA" || jwks.Keys[0]["use"] != "sig" || jwks.Keys[0]["e"] != "AQAB" || len(jwks.Keys[0]["kid"].(string)) != 43 {
		t.Errorf("JWKS not in B2C's shape: %v", jwks.Keys)
	}
	// An unknown policy is B2C's AADB2C90022, in the path form and the ?p= form.
	for _, u := range []string{tenantPath + "/B2C_1_nope/v2.0/.well-known/openid-configuration", tenantPath + "/v2.0/.well-known/openid-configuration?p=B2C_1_nope"} {
		var body map[string]any
		resp, err := http.Get(c.base + u)
		if err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
		}
		if err != nil || resp.StatusCode != http.StatusBadRequest || errorCode(t, body) != "AADB2C90022" {
			t.Errorf("unknown policy %s: %v %v", u, err, body)
		}
	}
	if resp, _ := http.Get(c.base + tenantPath + "/somewhere/else"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a path that is not B2C's: %d, want the next handler's 404", resp.StatusCode)
	}
}

func keysOf(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func TestSignInCodeAndRefresh(t *testing.T) {
	c := startEmulator(t, "")
	q := c.signIn(c.authorizeURL("B2C_1_susi", nil), "ada@contoso.example", "Passw0rd!")
	if q.Get("state") != "st4te" || q.Get("code") == "" {
		t.Fatalf("callback parameters %v", q)
	}
	if parts := strings.Split(q.Get("code"), "."); len(parts) != 5 || parts[1] != "" {
		t.Errorf("code %q is not in B2C's five-part shape", q.Get("code"))
	}
	status, body := c.redeem("B2C_1_susi", codeForm(q.Get("code")))
	if status != http.StatusOK {
		t.Fatalf("token: %d %v", status, body)
	}
	if _, ok := body["access_token"]; ok {
		t.Error("an access token without an API scope: B2C gives none")
	}
	for _, k := range []string{"id_token", "token_type", "not_before", "id_token_expires_in", "profile_info", "scope", "refresh_token", "refresh_token_expires_in"} {
		if _, ok := body[k]; !ok {
			t.Errorf("token answer lacks %s", k)
		}
	}
	claims := c.verify("B2C_1_susi", body["id_token"].(string), secretClient)
	if claims["nonce"] != "n0nce" || claims["tfp"] != "B2C_1_susi" || claims["ver"] != "1.0" || claims["name"] != "Ada Lovelace" || claims["extension_Role"] != "admin" {
		t.Errorf("claims %v", claims)
	}
	if emails, _ := claims["emails"].([]any); len(emails) != 1 || emails[0] != "ada@contoso.example" {
		t.Errorf("emails %v: want an array", claims["emails"])
	}
	if claims["sub"] != claims["oid"] || claims["iat"] == nil || claims["auth_time"] == nil || claims["nbf"] == nil {
		t.Errorf("standard claims missing: %v", claims)
	}

	// The code is single-use.
	if status, body := c.redeem("B2C_1_susi", codeForm(q.Get("code"))); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("reused code: %d %v", status, body)
	}

	// Refresh, with an API scope this time giving an access token.
	status, refreshed := c.redeem("B2C_1_susi", url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {body["refresh_token"].(string)},
		"client_id": {secretClient}, "client_secret": {"s3cret"},
	})
	if status != http.StatusOK {
		t.Fatalf("refresh: %d %v", status, refreshed)
	}
	if claims := c.verify("B2C_1_susi", refreshed["id_token"].(string), secretClient); claims["nonce"] != nil {
		t.Errorf("a refreshed ID token carries a nonce: %v", claims)
	}
	// A refresh token redeemed against another policy fails as in B2C.
	status, wrong := c.redeem("B2C_1_edit", url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {body["refresh_token"].(string)},
		"client_id": {secretClient}, "client_secret": {"s3cret"},
	})
	if status != http.StatusBadRequest || errorCode(t, wrong) != "AADB2C90088" {
		t.Errorf("refresh at another policy: %d %v", status, wrong)
	}
}

func TestAccessTokenForAPIScope(t *testing.T) {
	const apiClient = "a0b1c2d3-0000-4000-8000-00000000a0a1"
	c := startEmulator(t, "api https://contoso.onmicrosoft.com/tasks "+apiClient+" {\n\t\t\tscopes tasks.read\n\t\t}")
	scope := "https://contoso.onmicrosoft.com/tasks/tasks.read offline_access openid"
	q := c.signIn(c.authorizeURL("B2C_1_susi", url.Values{"scope": {scope}}), "ada@contoso.example", "Passw0rd!")
	form := codeForm(q.Get("code"))
	form.Set("client_info", "1") // as MSAL sends it
	status, body := c.redeem("B2C_1_susi", form)
	if status != http.StatusOK || body["access_token"] == nil || body["expires_in"] == nil {
		t.Fatalf("token: %d %v", status, body)
	}
	at := body["access_token"].(string)
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(at, ".")[1])
	var claims map[string]any
	_ = json.Unmarshal(payload, &claims)
	// As B2C: the audience is the API application's client ID, not its URI.
	if claims["aud"] != apiClient || claims["scp"] != "tasks.read" || claims["azp"] != secretClient || body["resource"] != apiClient {
		t.Errorf("access token claims %v, resource %v", claims, body["resource"])
	}
	// client_info, from which MSAL makes the account ID.
	raw, _ := base64.RawURLEncoding.DecodeString(fmt.Sprint(body["client_info"]))
	var info map[string]string
	if json.Unmarshal(raw, &info) != nil || info["uid"] != claims["oid"].(string)+"-b2c_1_susi" || info["utid"] != "0d5a8b3c-1111-4222-8333-944455556666" {
		t.Errorf("client_info %q", raw)
	}
	// A scope that no API exposes: AADB2C90117, back to the client.
	c.b = testcaddy.NewBrowser(t)
	resp := c.b.Get(c.authorizeURL("B2C_1_susi", url.Values{"scope": {"openid https://contoso.onmicrosoft.com/tasks/tasks.delete"}}))
	if q := c.callbackParams(resp); !strings.HasPrefix(q.Get("error_description"), "AADB2C90117: ") {
		t.Errorf("unexposed scope: %v", q)
	}
}

func TestTokenEndpointRefusesMisuse(t *testing.T) {
	c := startEmulator(t, "")
	code := func() string {
		c.b = testcaddy.NewBrowser(t) // no single sign-on: each code from the form
		return c.signIn(c.authorizeURL("B2C_1_susi", nil), "ada@contoso.example", "Passw0rd!").Get("code")
	}
	cases := []struct {
		name   string
		policy string
		change func(url.Values)
		status int
		code   string
	}{
		{"wrong secret", "B2C_1_susi", func(f url.Values) { f.Set("client_secret", "nope") }, 401, "AADB2C90081"},
		{"missing secret", "B2C_1_susi", func(f url.Values) { f.Del("client_secret") }, 400, "AADB2C90079"},
		{"missing verifier", "B2C_1_susi", func(f url.Values) { f.Del("code_verifier") }, 400, "AADB2C90183"},
		{"wrong verifier", "B2C_1_susi", func(f url.Values) { f.Set("code_verifier", strings.Repeat("x", 50)) }, 400, "AADB2C90182"},
		{"wrong redirect URI", "B2C_1_susi", func(f url.Values) { f.Set("redirect_uri", "http://localhost:9999/other") }, 400, "AADB2C90006"},
		{"wrong policy", "B2C_1_edit", func(url.Values) {}, 400, "AADB2C90088"},
		{"unknown grant type", "B2C_1_susi", func(f url.Values) { f.Set("grant_type", "password") }, 400, "AADB2C90086"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := codeForm(code())
			tc.change(f)
			status, body := c.redeem(tc.policy, f)
			if status != tc.status || errorCode(t, body) != tc.code {
				t.Errorf("got %d %v, want %d %s", status, body, tc.status, tc.code)
			}
		})
	}
	t.Run("native app without PKCE", func(t *testing.T) {
		c.b = testcaddy.NewBrowser(t)
		u := c.authorizeURL("B2C_1_susi", url.Values{"client_id": {"native-app"}, "code_challenge": nil, "code_challenge_method": nil})
		q := c.signIn(u, "ada@contoso.example", "Passw0rd!")
		status, body := c.redeem("B2C_1_susi", url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "redirect_uri": {callback}, "client_id": {"native-app"}})
		if status != 200 || body["id_token"] == nil {
			t.Errorf("got %d %v", status, body)
		}
	})
	t.Run("single-page app without PKCE", func(t *testing.T) {
		c.b = testcaddy.NewBrowser(t)
		u := c.authorizeURL("B2C_1_susi", url.Values{"client_id": {publicClient}, "code_challenge": nil, "code_challenge_method": nil})
		q := c.signIn(u, "ada@contoso.example", "Passw0rd!")
		status, body := c.redeem("B2C_1_susi", url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "redirect_uri": {callback}, "client_id": {publicClient}})
		if status != 400 || errorCode(t, body) != "AADB2C99059" {
			t.Errorf("got %d %v", status, body)
		}
	})
	t.Run("plain PKCE", func(t *testing.T) {
		c.b = testcaddy.NewBrowser(t)
		u := c.authorizeURL("B2C_1_susi", url.Values{"client_id": {publicClient}, "code_challenge": {verifier}, "code_challenge_method": {"plain"}})
		q := c.signIn(u, "ada@contoso.example", "Passw0rd!")
		status, body := c.redeem("B2C_1_susi", url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "redirect_uri": {callback}, "client_id": {publicClient}, "code_verifier": {verifier}})
		if status != 200 {
			t.Errorf("got %d %v", status, body)
		}
	})
}

func TestAuthorizeRefusesBadRequests(t *testing.T) {
	c := startEmulator(t, "")
	// A redirect URI that is not registered: as B2C does, the error goes to
	// the client's registered redirect URI, without the state.
	q := c.callbackParams(c.b.Get(c.authorizeURL("B2C_1_susi", url.Values{"redirect_uri": {"https://evil.example/cb"}})))
	if q.Get("error") != "redirect_uri_mismatch" || !strings.HasPrefix(q.Get("error_description"), "AADB2C90006: ") || q.Has("state") {
		t.Errorf("unregistered redirect_uri: %v", q)
	}
	if resp := c.b.Get(c.authorizeURL("B2C_1_susi", url.Values{"client_id": {"nobody"}})); resp.StatusCode != 400 || !strings.Contains(resp.Body, "AADB2C90018") {
		t.Errorf("unknown client: %d", resp.StatusCode)
	}
	// Other errors go back to the client with B2C's lower-case encoding.
	resp := c.b.Get(c.authorizeURL("B2C_1_susi", url.Values{"scope": {"offline_access"}}))
	if loc := resp.Header.Get("Location"); !strings.Contains(loc, "error=invalid_request&error_description=AADB2C90115%3a+") || !strings.Contains(loc, "%0d%0aCorrelation+ID%3a+") {
		t.Errorf("scope without openid: %q", loc)
	}
	resp = c.b.Get(c.authorizeURL("B2C_1_susi", url.Values{"response_type": {"token"}}))
	if q := c.callbackParams(resp); q.Get("error") != "unsupported_response_type" || q.Get("state") != "st4te" {
		t.Errorf("response_type token: %v", q)
	}
	// A wrong password shows the form again with an error, never a 500.
	page := c.b.Get(c.authorizeURL("B2C_1_susi", nil))
	again := c.b.Submit(page, map[string]string{"email": "ada@contoso.example", "password": "wrong"})
	if again.StatusCode != 200 || !strings.Contains(again.Body, "Your password is incorrect") {
		t.Errorf("wrong password: %d", again.StatusCode)
	}
	// Non-loopback clients are refused unless allowed; here everything is loopback.
}

func TestForgotPasswordCancelAndReset(t *testing.T) {
	c := startEmulator(t, "")
	page := c.b.Get(c.authorizeURL("B2C_1_susi", nil))
	q := c.callbackParams(c.b.Get(testcaddy.Link(t, page, "forgotPassword")))
	if q.Get("error") != "access_denied" || !strings.HasPrefix(q.Get("error_description"), "AADB2C90118: The user has forgotten their password.\r\nCorrelation ID: ") {
		t.Errorf("forgot password: %v", q)
	}

	reset := c.b.Get(c.authorizeURL("B2C_1_reset", nil))
	q = c.callbackParams(c.b.Get(testcaddy.Link(t, reset, "cancel")))
	if q.Get("error") != "access_denied" || !strings.HasPrefix(q.Get("error_description"), "AADB2C90091: ") || q.Get("state") != "st4te" {
		t.Errorf("cancel: %v", q)
	}

	q = c.callbackParams(c.b.SubmitVerified(reset, "ada@contoso.example", map[string]string{"password": "N3wPassword", "password_confirm": "N3wPassword"}))
	status, body := c.redeem("B2C_1_reset", codeForm(q.Get("code")))
	if status != 200 {
		t.Fatalf("token after reset: %d %v", status, body)
	}
	if claims := c.verify("B2C_1_reset", body["id_token"].(string), secretClient); claims["tfp"] != "B2C_1_reset" {
		t.Errorf("reset token tfp %v", claims["tfp"])
	}
	// The new password works; the old one does not.
	fresh := testcaddy.NewBrowser(t)
	c.b = fresh
	page = fresh.Get(c.authorizeURL("B2C_1_susi", nil))
	if r := fresh.Submit(page, map[string]string{"email": "ada@contoso.example", "password": "Passw0rd!"}); r.StatusCode != 200 {
		t.Errorf("old password still works: %d", r.StatusCode)
	}
	c.signIn(c.authorizeURL("B2C_1_susi", nil), "ada@contoso.example", "N3wPassword")
}

func TestSignUpSSOProfileEditAndLogout(t *testing.T) {
	c := startEmulator(t, "")
	page := c.b.Get(c.authorizeURL("B2C_1_susi", nil))
	signup := c.b.Get(testcaddy.Link(t, page, "createAccount"))
	q := c.callbackParams(c.b.SubmitVerified(signup, "grace@example.org", map[string]string{
		"password": "Hopper1906", "password_confirm": "Hopper1906", "name": "Grace Hopper",
	}))
	_, body := c.redeem("B2C_1_susi", codeForm(q.Get("code")))
	claims := c.verify("B2C_1_susi", body["id_token"].(string), secretClient)
	if claims["name"] != "Grace Hopper" {
		t.Errorf("signed-up user's claims %v", claims)
	}
	idToken := body["id_token"].(string)

	// Single sign-on: a second authorize answers at once...
	q = c.callbackParams(c.b.Get(c.authorizeURL("B2C_1_susi", nil)))
	if q.Get("code") == "" {
		t.Errorf("no SSO: %v", q)
	}
	// ...unless prompt=login.
	if r := c.b.Get(c.authorizeURL("B2C_1_susi", url.Values{"prompt": {"login"}})); r.StatusCode != 200 {
		t.Errorf("prompt=login skipped the form: %d", r.StatusCode)
	}

	// Profile edit changes the display name.
	edit := c.b.Get(c.authorizeURL("B2C_1_edit", nil))
	q = c.callbackParams(c.b.Submit(edit, map[string]string{"name": "Rear Admiral Hopper"}))
	_, body = c.redeem("B2C_1_edit", codeForm(q.Get("code")))
	if claims := c.verify("B2C_1_edit", body["id_token"].(string), secretClient); claims["name"] != "Rear Admiral Hopper" || claims["tfp"] != "B2C_1_edit" {
		t.Errorf("edited claims %v", claims)
	}

	// Logout with a hint requires a registered post_logout_redirect_uri.
	logout := c.policyURL("B2C_1_susi", "oauth2/v2.0/logout")
	bad := c.b.Get(logout + "?" + url.Values{"id_token_hint": {idToken}, "post_logout_redirect_uri": {"https://evil.example/"}}.Encode())
	if bad.StatusCode != 400 || !strings.Contains(bad.Body, "AADB2C90287") {
		t.Errorf("unregistered post_logout_redirect_uri: %d", bad.StatusCode)
	}
	out := c.b.Get(logout + "?" + url.Values{"id_token_hint": {idToken}, "post_logout_redirect_uri": {callback}, "state": {"bye"}}.Encode())
	if out.StatusCode != http.StatusFound || out.Header.Get("Location") != callback+"?state=bye" {
		t.Errorf("logout: %d %q", out.StatusCode, out.Header.Get("Location"))
	}
	// The SSO session is gone.
	if r := c.b.Get(c.authorizeURL("B2C_1_susi", nil)); r.StatusCode != 200 {
		t.Errorf("still signed in after logout: %d", r.StatusCode)
	}
}

func TestFormPostResponseMode(t *testing.T) {
	c := startEmulator(t, "")
	page := c.b.Get(c.authorizeURL("B2C_1_susi", url.Values{"response_mode": {"form_post"}}))
	resp := c.b.Submit(page, map[string]string{"email": "ada@contoso.example", "password": "Passw0rd!"})
	action, fields := testcaddy.Form(t, resp.Body)
	if resp.StatusCode != 200 || action != callback || fields.Get("state") != "st4te" || fields.Get("code") == "" {
		t.Errorf("form_post: %d %s %v", resp.StatusCode, action, fields)
	}
}

func TestKeyRotationWithPersistedKeys(t *testing.T) {
	c := startEmulator(t, "persist_keys")
	var before, after struct {
		Keys []map[string]any `json:"keys"`
	}
	getJSON(t, c.policyURL("B2C_1_susi", "discovery/v2.0/keys"), &before)
	if resp := c.rotateKeys("test-admin-key", ""); resp.StatusCode != 200 {
		t.Fatalf("rotate: %v", resp.Status)
	}
	getJSON(t, c.policyURL("B2C_1_susi", "discovery/v2.0/keys"), &after)
	if len(after.Keys) != 2 || after.Keys[1]["kid"] != before.Keys[0]["kid"] {
		t.Fatalf("after rotation the new key must come first and the old stay published: %v", after.Keys)
	}
	q := c.signIn(c.authorizeURL("B2C_1_susi", nil), "ada@contoso.example", "Passw0rd!")
	_, body := c.redeem("B2C_1_susi", codeForm(q.Get("code")))
	header, _ := base64.RawURLEncoding.DecodeString(strings.Split(body["id_token"].(string), ".")[0])
	if !strings.Contains(string(header), after.Keys[0]["kid"].(string)) {
		t.Errorf("new tokens are not signed with the new key: %s", header)
	}
	c.verify("B2C_1_susi", body["id_token"].(string), secretClient)
}

func TestPersistedKeysSurviveRestart(t *testing.T) {
	storage := t.TempDir()
	port := testcaddy.FreePort(t)
	cfg := testcaddy.Globals(storage) + fmt.Sprintf("http://127.0.0.1:%d {\n\tb2c_emulator {\n\t\tpersist_keys\n\t}\n}\n", port)
	kid := func() string {
		var jwks struct {
			Keys []map[string]any `json:"keys"`
		}
		getJSON(t, fmt.Sprintf("http://127.0.0.1:%d%s/B2C_1_susi/discovery/v2.0/keys", port, tenantPath), &jwks)
		return jwks.Keys[0]["kid"].(string)
	}
	testcaddy.Start(t, cfg)
	first := kid()
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	testcaddy.Start(t, cfg)
	if got := kid(); got != first {
		t.Errorf("after restart the key is %s, was %s", got, first)
	}
}

func TestOnlyLoopbackClients(t *testing.T) {
	e := &b2cemulator.Emulator{}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := e.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Cleanup()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { w.WriteHeader(299); return nil })
	for addr, want := range map[string]int{"203.0.113.5:4000": http.StatusForbidden, "127.0.0.1:4000": http.StatusOK, "[::1]:4000": http.StatusOK} {
		req := httptest.NewRequest("GET", "http://localhost"+tenantPath+"/B2C_1_susi/v2.0/.well-known/openid-configuration", nil)
		req.RemoteAddr = addr
		rec := httptest.NewRecorder()
		err := e.ServeHTTP(rec, req, next)
		status := rec.Code
		if he, ok := err.(caddyhttp.HandlerError); ok {
			status = he.StatusCode
		}
		if status != want {
			t.Errorf("%s: %d, want %d", addr, status, want)
		}
	}
	// Paths that are not the tenant's go to the next handler.
	rec := httptest.NewRecorder()
	_ = e.ServeHTTP(rec, httptest.NewRequest("GET", "/elsewhere", nil), next)
	if rec.Code != 299 {
		t.Errorf("other path: %d", rec.Code)
	}
}

// TestCustomPolicyShapes: issuer_form tfp and policy_claim acr give what
// custom policies issue, and client_secret_basic authenticates the client.
func TestCustomPolicyShapesAndBasicAuth(t *testing.T) {
	c := startEmulator(t, "issuer_form tfp\n\t\tpolicy_claim acr")
	var meta map[string]any
	getJSON(t, c.policyURL("B2C_1_susi", "v2.0/.well-known/openid-configuration"), &meta)
	if meta["issuer"] != c.base+"/tfp/0d5a8b3c-1111-4222-8333-944455556666/B2C_1_susi/v2.0/" {
		t.Errorf("tfp issuer %v", meta["issuer"])
	}
	q := c.signIn(c.authorizeURL("B2C_1_susi", nil), "ada@contoso.example", "Passw0rd!")
	form := codeForm(q.Get("code"))
	form.Del("client_id")
	form.Del("client_secret")
	req, _ := http.NewRequest("POST", c.policyURL("B2C_1_susi", "oauth2/v2.0/token"), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(secretClient), url.QueryEscape("s3cret"))
	status, body := doJSON(t, req)
	if status != 200 {
		t.Fatalf("client_secret_basic: %d %v", status, body)
	}
	claims := c.verify("B2C_1_susi", body["id_token"].(string), secretClient)
	if claims["acr"] != "b2c_1_susi" || claims["tfp"] != nil {
		t.Errorf("custom policy claims: acr %v tfp %v", claims["acr"], claims["tfp"])
	}
}

// signedInSSO signs in once and returns an ID token of the secret client.
func (c *rp) signedInSSO() string {
	c.t.Helper()
	q := c.signIn(c.authorizeURL("B2C_1_susi", nil), "ada@contoso.example", "Passw0rd!")
	_, body := c.redeem("B2C_1_susi", codeForm(q.Get("code")))
	return body["id_token"].(string)
}

// stillSignedIn tells whether the browser's SSO session answers authorize.
func (c *rp) stillSignedIn() bool {
	return c.b.Get(c.authorizeURL("B2C_1_susi", nil)).StatusCode == http.StatusFound
}

// TestEndSessionFollowsB2CRules: the rules of B2C's "Send a sign-out
// request" (openid-connect article) and of its session behaviour settings.
func TestEndSessionFollowsB2CRules(t *testing.T) {
	logout := func(c *rp, q url.Values) *testcaddy.Response {
		return c.b.Get(c.policyURL("B2C_1_susi", "oauth2/v2.0/logout") + "?" + q.Encode())
	}
	t.Run("no hint: any post_logout_redirect_uri is followed", func(t *testing.T) {
		c := startEmulator(t, "")
		c.signedInSSO()
		out := logout(c, url.Values{"post_logout_redirect_uri": {"https://elsewhere.example/bye"}, "state": {"s1"}})
		if out.StatusCode != http.StatusFound || out.Header.Get("Location") != "https://elsewhere.example/bye?state=s1" || c.stillSignedIn() {
			t.Errorf("logout without hint: %d %q", out.StatusCode, out.Header.Get("Location"))
		}
	})
	t.Run("refused logouts keep the session", func(t *testing.T) {
		c := startEmulator(t, "")
		hint := c.signedInSSO()
		out := logout(c, url.Values{"id_token_hint": {hint}, "post_logout_redirect_uri": {"https://evil.example/"}})
		if out.StatusCode != http.StatusBadRequest || !c.stillSignedIn() {
			t.Errorf("refused logout: %d, signed in %v", out.StatusCode, c.stillSignedIn())
		}
	})
	t.Run("require ID token in logout requests", func(t *testing.T) {
		c := startEmulator(t, "logout_requires_id_token")
		hint := c.signedInSSO()
		out := logout(c, url.Values{"post_logout_redirect_uri": {callback}})
		if out.StatusCode != http.StatusBadRequest || !strings.Contains(out.Body, "AADB2C90272") || !c.stillSignedIn() {
			t.Errorf("logout without hint: %d", out.StatusCode)
		}
		out = logout(c, url.Values{"id_token_hint": {hint}, "post_logout_redirect_uri": {callback}})
		if out.StatusCode != http.StatusFound || c.stillSignedIn() {
			t.Errorf("logout with hint: %d", out.StatusCode)
		}
	})
	t.Run("application-scoped SSO needs client_id", func(t *testing.T) {
		c := startEmulator(t, "sso_scope application")
		c.signedInSSO()
		logout(c, url.Values{"post_logout_redirect_uri": {callback}})
		if !c.stillSignedIn() {
			t.Error("an anonymous logout ended an application-scoped session")
		}
		logout(c, url.Values{"post_logout_redirect_uri": {callback}, "client_id": {secretClient}})
		if c.stillSignedIn() {
			t.Error("a logout naming the application kept its session")
		}
	})
}

// TestFrontChannelLogoutFrames: with sid_claim, ID tokens carry the SSO
// session's sid, and end_session loads the front-channel logout URL of every
// other application of the session: with iss and sid on B2C, with sid alone
// in the Entra flavors (testdata/fixtures/signout.md).
func TestFrontChannelLogoutFrames(t *testing.T) {
	for flavor, policy := range map[string]string{"b2c": "B2C_1_susi", "entra_id": ""} {
		c := startEmulator(t, "flavor "+flavor+"\n\t\tsid_claim\n\t\tclient other-app {\n\t\t\tredirect_uri "+callback+"\n\t\t\tfront_channel_logout_uri https://other.example/signout?x=1\n\t\t}")
		q := c.signIn(c.authorizeURL(policy, nil), "ada@contoso.example", "Passw0rd!")
		_, body := c.redeem(policy, codeForm(q.Get("code")))
		hint := body["id_token"].(string)
		claims := c.verify(policy, hint, secretClient)
		sid, _ := claims["sid"].(string)
		if sid == "" {
			t.Fatalf("%s: no sid claim: %v", flavor, claims)
		}
		// The other application signs in silently through SSO.
		if r := c.b.Get(c.authorizeURL(policy, url.Values{"client_id": {"other-app"}})); r.StatusCode != http.StatusFound {
			t.Fatalf("%s: SSO for the other app: %d", flavor, r.StatusCode)
		}
		out := c.b.Get(c.policyURL(policy, "oauth2/v2.0/logout") + "?" + url.Values{"id_token_hint": {hint}, "post_logout_redirect_uri": {callback}}.Encode())
		m := regexp.MustCompile(`<iframe class="front-channel-logout" src="([^"]*)"`).FindStringSubmatch(out.Body)
		if out.StatusCode != http.StatusOK || m == nil || !strings.Contains(out.Body, `id="continue" href="`+callback+`"`) {
			t.Fatalf("%s: front-channel page: %d\n%s", flavor, out.StatusCode, out.Body)
		}
		src, _ := url.Parse(html.UnescapeString(m[1]))
		wantIss := claims["iss"]
		if flavor != "b2c" {
			wantIss = "" // Entra sends sid alone
		}
		if q := src.Query(); src.Host != "other.example" || q.Get("x") != "1" || q.Get("iss") != wantIss || q.Get("sid") != sid {
			t.Errorf("%s: front-channel URL %s", flavor, src)
		}
	}
}

// TestSinglePageAppCORS: a single-page app redeems its code from the
// browser, so the token endpoint answers its origin's cross-origin
// requests, and no other origin's.
func TestSinglePageAppCORS(t *testing.T) {
	c := startEmulator(t, "")
	preflight := func(origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, c.policyURL("B2C_1_susi", "oauth2/v2.0/token"), nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := preflight("http://localhost:9999"); resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "http://localhost:9999" {
		t.Errorf("the SPA's origin: %d %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	if resp := preflight("https://evil.example"); resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("another origin may call the token endpoint: %q", resp.Header.Get("Access-Control-Allow-Origin"))
	}
	req, _ := http.NewRequest(http.MethodGet, c.policyURL("B2C_1_susi", "v2.0/.well-known/openid-configuration"), nil)
	req.Header.Set("Origin", "https://app.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("metadata CORS: %q", resp.Header.Get("Access-Control-Allow-Origin"))
	}
}

// TestRefreshTokensExpireAndAreRevokedByAReset: B2C's refresh token
// failures, which a relying party must treat as "signed out": AADB2C90080
// past the refresh token lifetime, AADB2C90129 after a password reset.
func TestRefreshTokensExpireAndAreRevokedByAReset(t *testing.T) {
	refresh := func(c *rp, rt string) (int, map[string]any) {
		return c.redeem("B2C_1_susi", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {secretClient}, "client_secret": {"s3cret"}, "scope": {"openid offline_access"}})
	}
	signedIn := func(c *rp) string {
		q := c.signIn(c.authorizeURL("B2C_1_susi", nil), "ada@contoso.example", "Passw0rd!")
		_, body := c.redeem("B2C_1_susi", codeForm(q.Get("code")))
		return body["refresh_token"].(string)
	}

	c := startEmulator(t, "refresh_token_lifetime 1s")
	rt := signedIn(c)
	if status, body := refresh(c, rt); status != http.StatusOK || body["refresh_token"] == rt {
		t.Fatalf("a fresh refresh token: %d, rotated %v", status, body["refresh_token"] != rt)
	}
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		status, body := refresh(c, rt)
		if status == http.StatusBadRequest && errorCode(t, body) == "AADB2C90080" {
			// B2C's words: the current time, when the grant was issued and when its window ends.
			if d, _ := body["error_description"].(string); !regexp.MustCompile(`Current time: \d+, Grant issued time: \d+, Grant sliding window expiration time: \d+\.`).MatchString(d) {
				t.Errorf("AADB2C90080's text: %q", d)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("past its lifetime: %d %v, want AADB2C90080", status, body)
		}
		<-tick.C
	}

	c = startEmulator(t, "")
	rt = signedIn(c)
	reset := c.b.Get(c.authorizeURL("B2C_1_reset", nil))
	c.callbackParams(c.b.SubmitVerified(reset, "ada@contoso.example", map[string]string{"password": "N3wPassw0rd", "password_confirm": "N3wPassw0rd"}))
	if status, body := refresh(c, rt); status != http.StatusBadRequest || errorCode(t, body) != "AADB2C90129" {
		t.Errorf("after a password reset: %d %v, want AADB2C90129", status, body)
	}
}

// TestWebAppsHaveASecret: a Web registration is a confidential client.
func TestWebAppsHaveASecret(t *testing.T) {
	for name, c := range map[string]b2cemulator.Client{
		"web without secret": {ClientID: "a", Platform: "web"},
		"spa with secret":    {ClientID: "b", Platform: "spa", Secret: "x"},
		"unknown platform":   {ClientID: "c", Platform: "tv"},
	} {
		e := &b2cemulator.Emulator{Clients: []b2cemulator.Client{c}}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		err := e.Provision(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "platform") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestLegacyPathsAndNotFound: the forms older apps and Microsoft's samples
// use (/tfp/…, the v1 keys path, ?p= on every endpoint) answer; an unknown
// path under the tenant gets B2C's 404, not the next handler.
func TestLegacyPathsAndNotFound(t *testing.T) {
	c := startEmulator(t, "")
	for _, path := range []string{
		"/tfp/contoso.onmicrosoft.com/B2C_1_susi/v2.0/.well-known/openid-configuration",
		tenantPath + "/B2C_1_susi/discovery/keys",
		tenantPath + "/discovery/keys?p=B2C_1_susi",
		tenantPath + "/discovery/v2.0/keys?p=b2c_1_susi",
		tenantPath + "/v2.0/.well-known/openid-configuration?p=B2C_1_SUSI",
	} {
		resp, err := http.Get(c.base + path)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %v %v", path, err, resp.StatusCode)
		}
		resp.Body.Close()
	}
	resp, err := http.Get(c.base + tenantPath + "/B2C_1_susi/oauth2/v2.0/nothing")
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 512)
	n, _ := resp.Body.Read(body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body[:n]), "404 - File or directory not found") {
		t.Errorf("unknown path under the tenant: %d %s", resp.StatusCode, body[:n])
	}
	if resp, _ := http.Get(c.base + "/elsewhere"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a path outside the tenant: %d", resp.StatusCode)
	}
}

// rotateKeys posts to the admin endpoint with a key (none if "") and an
// Origin (none if "").
func (c *rp) rotateKeys(key, origin string) *http.Response {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.base+tenantPath+"/emulator/rotate_keys", nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestRefreshTokenSlidingWindow: B2C's bounded sliding window ends the
// refresh chain a fixed time after the sign-in, "irrespective of the
// validity period of the most recent refresh token": a token refreshed a
// moment ago is refused (AADB2C90080) once the window has passed, and no
// refresh token is issued past it. Entra has no such window.
func TestRefreshTokenSlidingWindow(t *testing.T) {
	c := startEmulator(t, "refresh_token_lifetime 1s\n\t\trefresh_token_window 2s")
	start := time.Now()
	q := c.signIn(c.authorizeURL("B2C_1_susi", nil), "ada@contoso.example", "Passw0rd!")
	_, body := c.redeem("B2C_1_susi", codeForm(q.Get("code")))
	rt := body["refresh_token"].(string)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	refreshes := 0
	rtIssued := time.Now()
	for {
		status, body := c.redeem("B2C_1_susi", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {secretClient}, "client_secret": {"s3cret"}, "scope": {"openid offline_access"}})
		if status == http.StatusOK {
			refreshes++
			rt, rtIssued = body["refresh_token"].(string), time.Now()
			if left := time.Until(start.Add(2 * time.Second)); body["refresh_token_expires_in"].(float64) > left.Seconds()+1 {
				t.Fatalf("a refresh token outlives the window: %v s, %v left", body["refresh_token_expires_in"], left)
			}
		} else {
			if errorCode(t, body) != "AADB2C90080" || time.Since(start) < 2*time.Second {
				t.Fatalf("refused after %s: %d %v", time.Since(start), status, body)
			}
			if time.Since(rtIssued) > time.Second {
				t.Fatalf("the refresh token was past its own lifetime: the test proves nothing")
			}
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("the chain outlived its 2s window")
		}
		<-tick.C
	}
	if refreshes < 5 {
		t.Errorf("only %d refreshes inside the window", refreshes)
	}
	for name, e := range map[string]*b2cemulator.Emulator{
		"shorter than the lifetime": {RefreshTokenWindow: caddy.Duration(time.Hour)},
		"in an Entra flavor":        {Flavor: "entra_id", RefreshTokenWindow: caddy.Duration(2000 * time.Hour)},
	} {
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		err := e.Provision(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "refresh_token_window") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
