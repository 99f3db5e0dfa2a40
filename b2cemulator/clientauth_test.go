package b2cemulator_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/credentials"
	"github.com/caddy-b2c/caddy-b2c/internal/testcaddy"
)

const certClient = "22222222-3333-4444-5555-666666666666"

// forgedAssertion signs claims with the key file, naming the certificate
// file's SHA-256 thumbprint, as a client assertion.
func forgedAssertion(t *testing.T, certFile, keyFile string, claims map[string]any) string {
	certPEM, _ := os.ReadFile(certFile)
	cb, _ := pem.Decode(certPEM)
	sum := sha256.Sum256(cb.Bytes)
	return assertionWithHeader(t, keyFile, map[string]string{"x5t#S256": base64.RawURLEncoding.EncodeToString(sum[:])}, claims)
}

// assertionWithHeader signs claims PS256 with the key file, with the
// thumbprint header given.
func assertionWithHeader(t *testing.T, keyFile string, thumbprint map[string]string, claims map[string]any) string {
	keyPEM, _ := os.ReadFile(keyFile)
	kb, _ := pem.Decode(keyPEM)
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	header := map[string]string{"alg": "PS256", "typ": "JWT"}
	maps.Copy(header, thumbprint)
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	signing := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	digest := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPSS(rand.Reader, k.(*rsa.PrivateKey), crypto.SHA256, digest[:], nil)
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// postAssertion asks the token endpoint for an app-only token for the
// client itself, proving the client with the assertion.
func postAssertion(t *testing.T, endpoint, clientID, assertion string) (int, map[string]any) {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID},
		"scope": {clientID + "/.default"}, "client_assertion_type": {credentials.AssertionType}, "client_assertion": {assertion}}
	req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return doJSON(t, req)
}

// doJSON sends a request and decodes its JSON answer.
func doJSON(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// stsCode is an identity platform error's first code, as AADSTS<n>.
func stsCode(body map[string]any) string {
	if codes, _ := body["error_codes"].([]any); len(codes) > 0 {
		return fmt.Sprintf("AADSTS%v", codes[0])
	}
	return ""
}

// TestClientAssertionsCheckedAsEntraDoes: the Entra ID flavor's token
// endpoint accepts a certificate assertion made as Microsoft documents it
// (credentials.Certificate), again within its life as Entra does, with its
// thumbprint in any base64 form clients send, and refuses each defect with
// Entra's code; the B2C flavor refuses assertions with AADB2C99027.
func TestClientAssertionsCheckedAsEntraDoes(t *testing.T) {
	cert, key := testcaddy.Certificate(t)
	otherCert, otherKey := testcaddy.Certificate(t)
	c := startEmulator(t, fmt.Sprintf("flavor entra_id\n\t\tclient %s {\n\t\t\tcertificate %s\n\t\t\tredirect_uri %s\n\t\t}", certClient, cert, callback))
	endpoint := c.policyURL("", "oauth2/v2.0/token")
	post := func(assertion string) (int, map[string]any) { return postAssertion(t, endpoint, certClient, assertion) }
	code := stsCode

	form := url.Values{}
	good := &credentials.Certificate{ClientID: certClient, CertFile: cert, KeyFile: key}
	if err := good.Apply(context.Background(), form, endpoint); err != nil {
		t.Fatal(err)
	}
	status, body := post(form.Get("client_assertion"))
	if status != http.StatusOK || body["access_token"] == nil {
		t.Fatalf("a good assertion: %d %v", status, body)
	}
	if status, body := post(form.Get("client_assertion")); status != http.StatusOK {
		t.Errorf("the same assertion again, within its life: %d %v", status, body)
	}

	now := time.Now().Unix()
	claims := func(change func(map[string]any)) map[string]any {
		m := map[string]any{"aud": endpoint, "iss": certClient, "sub": certClient, "jti": fmt.Sprint(time.Now().UnixNano()), "nbf": now, "exp": now + 300}
		change(m)
		return m
	}
	for _, tc := range []struct {
		name, want, cert, key string
		change                func(map[string]any)
	}{
		{"a certificate the app does not have", "AADSTS700027", otherCert, otherKey, func(map[string]any) {}},
		{"another app's ID", "AADSTS700021", cert, key, func(m map[string]any) { m["iss"], m["sub"] = secretClient, secretClient }},
		{"another audience", "AADSTS700027", cert, key, func(m map[string]any) { m["aud"] = "https://login.microsoftonline.com/x/oauth2/v2.0/token" }},
		{"expired", "AADSTS700024", cert, key, func(m map[string]any) { m["nbf"], m["exp"] = now-3600, now-1200 }},
		{"not yet valid", "AADSTS700024", cert, key, func(m map[string]any) { m["nbf"], m["exp"] = now+3600, now+3900 }},
	} {
		_, body := post(forgedAssertion(t, tc.cert, tc.key, claims(tc.change)))
		if body["error"] != "invalid_client" || code(body) != tc.want {
			t.Errorf("%s: %v, want invalid_client %s", tc.name, body, tc.want)
		}
	}
	// The thumbprint as MSAL Go (padded standard base64) and MSAL Python
	// (padded URL-safe) write it, SHA-256 or SHA-1.
	certPEM, _ := os.ReadFile(cert)
	block, _ := pem.Decode(certPEM)
	s256, s1 := sha256.Sum256(block.Bytes), sha1.Sum(block.Bytes)
	for name, header := range map[string]map[string]string{
		"x5t#S256 padded standard": {"x5t#S256": base64.StdEncoding.EncodeToString(s256[:])},
		"x5t#S256 padded URL-safe": {"x5t#S256": base64.URLEncoding.EncodeToString(s256[:])},
		"x5t padded standard":      {"x5t": base64.StdEncoding.EncodeToString(s1[:])},
		"x5t padded URL-safe":      {"x5t": base64.URLEncoding.EncodeToString(s1[:])},
	} {
		if status, body := post(assertionWithHeader(t, key, header, claims(func(map[string]any) {}))); status != http.StatusOK {
			t.Errorf("%s: %d %v", name, status, body)
		}
	}
	if _, body := post(assertionWithHeader(t, key, map[string]string{"x5t": base64.URLEncoding.EncodeToString(s256[:20])}, claims(func(map[string]any) {}))); code(body) != "AADSTS700027" {
		t.Errorf("another thumbprint: %v", body)
	}
	if _, body := post("not.a.jwt"); body["error"] != "invalid_client" {
		t.Errorf("garbage: %v", body)
	}
}
