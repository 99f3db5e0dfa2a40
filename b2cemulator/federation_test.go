package b2cemulator_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/credentials"
	"github.com/caddy-b2c/caddy-b2c/internal/testcaddy"
)

const (
	fedClient      = "33333333-4444-5555-6666-777777777777"
	identityClient = "44444444-5555-6666-7777-888888888888"
	identityObject = "55555555-6666-7777-8888-999999999999"
	workload       = "system:serviceaccount:web:caddy"
	fedTenant      = "0d5a8b3c-1111-4222-8333-944455556666"
)

// TestFederatedCredentialsCheckedAsEntraDoes: the Entra ID flavor's token
// endpoint accepts, as a client assertion, a token a federated credential of
// the client trusts — a Kubernetes-style issuer's, checked against that
// issuer's published keys, or the emulator's own managed identity's — as
// many times as it is presented; and refuses each mismatch with Entra's
// code. The managed identity endpoint answers in IMDS's and App Service's
// shapes, and refuses what they refuse.
func TestFederatedCredentialsCheckedAsEntraDoes(t *testing.T) {
	kube, other := testcaddy.NewIssuer(t), testcaddy.NewIssuer(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	tenantIssuer := base + "/" + fedTenant + "/v2.0" // the issuer of the managed identity's tokens
	testcaddy.Start(t, testcaddy.Globals(t.TempDir())+fmt.Sprintf(`%s {
	b2c_emulator {
		flavor entra_id
		tenant_id %s
		admin_key test-admin-key
		managed_identity %s %s
		client %s {
			federated_credential %s %s
			federated_credential %s %s
			federated_credential %s %s
			redirect_uri %s
		}
	}
}
`, base, fedTenant, identityClient, identityObject, fedClient, kube.URL, workload, other.URL+"/", workload, tenantIssuer, identityObject, callback))
	c := &rp{t: t, base: base, b: testcaddy.NewBrowser(t)}
	endpoint := c.policyURL("", "oauth2/v2.0/token")
	post := func(assertion string) map[string]any {
		_, body := postAssertion(t, endpoint, fedClient, assertion)
		return body
	}
	code := stsCode

	good := kube.Token(t, workload, "api://AzureADTokenExchange", time.Hour)
	for i := range 2 {
		if body := post(good); body["access_token"] == nil {
			t.Fatalf("the cluster's token, use %d: %v", i+1, body)
		}
	}
	stranger, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, tc := range []struct{ name, assertion, want string }{
		{"another subject", kube.Token(t, "system:serviceaccount:web:other", "api://AzureADTokenExchange", time.Hour), "AADSTS700213"},
		{"another audience", kube.Token(t, workload, "https://kubernetes.default.svc", time.Hour), "AADSTS700212"},
		{"an issuer no credential names", kube.Token(t, workload, "api://AzureADTokenExchange", time.Hour, func(m map[string]any) { m["iss"] = "https://oidc.prod-aks.azure.com/x/" }), "AADSTS700211"},
		{"the issuer spelled without its trailing slash", other.Token(t, workload, "api://AzureADTokenExchange", time.Hour), "AADSTS700211"},
		{"expired", kube.Token(t, workload, "api://AzureADTokenExchange", -20*time.Minute, func(m map[string]any) {
			m["nbf"], m["iat"] = time.Now().Add(-2*time.Hour).Unix(), time.Now().Add(-2*time.Hour).Unix()
		}), "AADSTS700024"},
		{"signed by a key the issuer does not publish", testcaddy.SignJWT(t, stranger, "sa-key", map[string]any{"iss": kube.URL, "sub": workload, "aud": "api://AzureADTokenExchange", "exp": time.Now().Add(time.Hour).Unix()}), "AADSTS700027"},
	} {
		if body := post(tc.assertion); code(body) != tc.want {
			t.Errorf("%s: %v, want %s", tc.name, body, tc.want)
		}
	}

	// The managed identity endpoint, IMDS's shape and App Service's.
	mi := c.base + "/metadata/identity/oauth2/token"
	get := func(query string, header http.Header) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodGet, mi+"?"+query, nil)
		req.Header = header
		return doJSON(t, req)
	}
	q := "api-version=2018-02-01&resource=api://AzureADTokenExchange&client_id=" + identityClient
	for _, tc := range []struct {
		name, query string
		header      http.Header
		want        int
	}{
		{"IMDS without Metadata: true", q, http.Header{}, http.StatusBadRequest},
		{"IMDS without api-version", strings.Replace(q, "api-version=2018-02-01&", "", 1), http.Header{"Metadata": {"true"}}, http.StatusBadRequest},
		{"App Service with a wrong IDENTITY_HEADER", q, http.Header{"X-Identity-Header": {"guess"}}, http.StatusUnauthorized},
		{"an identity that does not exist", strings.Replace(q, identityClient, fedClient, 1), http.Header{"Metadata": {"true"}}, http.StatusBadRequest},
		{"another resource", strings.Replace(q, "api://AzureADTokenExchange", "https://graph.microsoft.com", 1), http.Header{"Metadata": {"true"}}, http.StatusBadRequest},
	} {
		if status, body := get(tc.query, tc.header); status != tc.want || body["access_token"] != nil {
			t.Errorf("%s: %d %v, want %d", tc.name, status, body, tc.want)
		}
	}
	status, imds := get(q, http.Header{"Metadata": {"true"}})
	if status != 200 || imds["expires_in"] == nil || imds["resource"] != "api://AzureADTokenExchange" {
		t.Fatalf("IMDS: %d %v", status, imds)
	}
	if body := post(imds["access_token"].(string)); body["access_token"] == nil {
		t.Errorf("the managed identity's token (IMDS): %v", body)
	}

	// What the plugin's managed identity credential does, through the
	// variables App Service sets.
	t.Setenv("IDENTITY_ENDPOINT", mi)
	t.Setenv("IDENTITY_HEADER", "test-admin-key")
	form := url.Values{}
	if err := (&credentials.ManagedIdentity{ClientID: identityClient}).Apply(context.Background(), form, endpoint); err != nil {
		t.Fatal(err)
	}
	if body := post(form.Get("client_assertion")); body["access_token"] == nil {
		t.Errorf("the managed identity's token (App Service): %v", body)
	}
}

// TestB2CRefusesClientAssertions: Azure AD B2C's user flows answer a client
// assertion with AADB2C99027, however good it is.
func TestB2CRefusesClientAssertions(t *testing.T) {
	kube := testcaddy.NewIssuer(t)
	c := startEmulator(t, "")
	resp, err := http.PostForm(c.policyURL("B2C_1_susi", "oauth2/v2.0/token"), url.Values{"grant_type": {"authorization_code"}, "code": {"x"},
		"client_id": {secretClient}, "client_assertion_type": {credentials.AssertionType},
		"client_assertion": {kube.Token(t, workload, "api://AzureADTokenExchange", time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(body["error_description"], "AADB2C99027") {
		t.Errorf("B2C with a client assertion: %d %v", resp.StatusCode, body)
	}
}

// TestOnlyManagedIdentityTokensOfTheTenant: a token of the tenant itself
// serves as a federated credential only when a managed identity got it
// (AADSTS700226), even when a credential names its issuer, subject and
// audience: here another app's app-only token.
func TestOnlyManagedIdentityTokensOfTheTenant(t *testing.T) {
	base := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	globals := testcaddy.Globals(t.TempDir())
	config := func(credential string) string {
		return globals + fmt.Sprintf(`%s {
	b2c_emulator {
		flavor entra_id
		tenant_id %s
		persist_keys
		client other-app s3cret {
			redirect_uri %s
		}
		client %s {
			%s
			redirect_uri %[3]s
		}
	}
}
`, base, fedTenant, callback, fedClient, credential)
	}
	testcaddy.Start(t, config(""))
	endpoint := base + "/" + fedTenant + "/oauth2/v2.0/token"
	req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(url.Values{"grant_type": {"client_credentials"},
		"client_id": {"other-app"}, "client_secret": {"s3cret"}, "scope": {fedClient + "/.default"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	_, body := doJSON(t, req)
	token, _ := body["access_token"].(string)
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("no app-only token: %v", body)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct{ Iss, Sub, Aud string }
	_ = json.Unmarshal(payload, &claims)

	// The same tenant (its keys kept in storage), now trusting exactly
	// that token's issuer, subject and audience.
	testcaddy.Start(t, config(fmt.Sprintf("federated_credential %s %s %s", claims.Iss, claims.Sub, claims.Aud)))
	http.DefaultClient.CloseIdleConnections() // the reload closed them
	if _, body := postAssertion(t, endpoint, fedClient, token); stsCode(body) != "AADSTS700226" {
		t.Errorf("another app's token of the tenant as a federated credential: %v", body)
	}
}
