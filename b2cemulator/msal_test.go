package b2cemulator_test

import (
	"bufio"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-b2c/caddy-b2c/internal/testcaddy"
)

// Microsoft's own client libraries, which nobody here wrote, sign in
// against the emulator as against a B2C custom domain: over HTTPS (MSAL
// refuses http authorities), with validate_authority=False (Python) or
// knownAuthorities (Node).

const (
	msalClient = "5c0ffee5-1111-4222-8333-944455550001"
	msalSecret = "msal-s3cret"
	msalAPI    = "a0b1c2d3-0000-4000-8000-00000000a0a1"
	msalPublic = "5c0ffee5-1111-4222-8333-944455550002" // a mobile/desktop registration: PKCE, no secret
	msalReturn = "http://localhost:9999/msal"
)

// needClient finds a client program, or skips outside CI and fails under it.
func needClient(t *testing.T, what, install string, path ...string) {
	t.Helper()
	for _, p := range path {
		_, err := os.Stat(p)
		testcaddy.Require(t, what, install, err == nil)
	}
}

// httpsEmulator starts the emulator on HTTPS, with a certificate from a
// CA made for the test, and returns its origin, the CA's file and a client
// that trusts it.
func httpsEmulator(t *testing.T) (origin, caFile string, client *http.Client) {
	dir := t.TempDir()
	caFile, certFile, keyFile := testcaddy.TestCA(t, dir)
	port := testcaddy.FreePort(t)
	origin = fmt.Sprintf("https://127.0.0.1:%d", port)
	testcaddy.Start(t, testcaddy.GlobalsHTTPS(dir)+fmt.Sprintf(`
%s {
	tls %s %s
	b2c_emulator {
		tenant_id 0d5a8b3c-1111-4222-8333-944455556666
		client %[4]s %[5]s {
			redirect_uri %[6]s
		}
		client %[7]s {
			redirect_uri %[6]s
		}
		api https://contoso.onmicrosoft.com/tasks %[8]s {
			scopes tasks.read
			app_role tasks.read.all %[4]s
		}
		user ada@contoso.example Passw0rd! {
			name "Ada Lovelace"
		}
	}
}
`, origin, certFile, keyFile, msalClient, msalSecret, msalReturn, msalPublic, msalAPI))
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return origin, caFile, &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// msalResult is what the client scripts print at the end.
type msalResult struct {
	Error            string         `json:"error"`
	ErrorDescription string         `json:"error_description"`
	IDTokenClaims    map[string]any `json:"id_token_claims"`
	AccessToken      string         `json:"access_token"`
	HomeAccountID    string         `json:"home_account_id"`
	Refreshed        string         `json:"refreshed_access_token"`
	RefreshError     string         `json:"refresh_error"`
}

// runMSAL runs a client script: it prints the authorize URL, the test signs
// in there like a browser, hands the script the redirect URL, and returns
// what the library made of it.
func runMSAL(t *testing.T, cmd *exec.Cmd, browser *http.Client) msalResult {
	t.Helper()
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	var start struct {
		AuthURI string `json:"auth_uri"`
	}
	if !lines.Scan() || json.Unmarshal(lines.Bytes(), &start) != nil || start.AuthURI == "" {
		t.Fatalf("no authorize URL from the client: %q %v", lines.Text(), lines.Err())
	}

	b := testcaddy.NewBrowser(t)
	b.Client.Transport = browser.Transport
	page := b.Get(start.AuthURI)
	if !strings.Contains(page.Body, `id="localAccountForm"`) {
		t.Fatalf("authorize URL %s: %d\n%s", start.AuthURI, page.StatusCode, page.Body)
	}
	done := b.Submit(page, map[string]string{"email": "ada@contoso.example", "password": "Passw0rd!"})
	back := done.Header.Get("Location")
	if !strings.HasPrefix(back, msalReturn+"?") {
		t.Fatalf("the emulator sent the browser to %q", back)
	}
	_, _ = io.WriteString(stdin, back+"\n")
	var res msalResult
	if !lines.Scan() || json.Unmarshal(lines.Bytes(), &res) != nil {
		t.Fatalf("no result from the client: %q %v", lines.Text(), lines.Err())
	}
	return res
}

// checkMSALResult asserts what a B2C app gets from MSAL: no error, the
// user's claims, an access token for the API (its client ID as aud), and
// an account ID built from client_info.
func checkMSALResult(t *testing.T, res msalResult) {
	t.Helper()
	if res.Error != "" {
		t.Fatalf("MSAL error %s: %s", res.Error, res.ErrorDescription)
	}
	oid, _ := res.IDTokenClaims["oid"].(string)
	if oid == "" || res.IDTokenClaims["name"] != "Ada Lovelace" || res.IDTokenClaims["tfp"] != "B2C_1_susi" {
		t.Errorf("ID token claims %v", res.IDTokenClaims)
	}
	at := jwtClaims(res.AccessToken)
	if at["aud"] != msalAPI || at["scp"] != "tasks.read" {
		t.Errorf("access token claims %v", at)
	}
	// MSAL's account ID is <uid>.<utid> from client_info: for B2C
	// <oid>-<policy>.<tenant id>. Without client_info it falls back to sub.
	if want := oid + "-b2c_1_susi.0d5a8b3c-1111-4222-8333-944455556666"; res.HomeAccountID != want {
		t.Errorf("account ID %q, want %q (from client_info)", res.HomeAccountID, want)
	}
	// Silent renewal with the refresh token.
	if parts := strings.Split(res.Refreshed, "."); len(parts) != 3 {
		t.Errorf("no access token from the silent refresh: %q %s", res.Refreshed, res.RefreshError)
	}
}

// clients are the two kinds of registration an app may have: a Web app
// (confidential, with its secret) and a mobile/desktop app (public, PKCE).
var clients = []struct{ name, id, secret string }{
	{"confidential", msalClient, msalSecret},
	{"public", msalPublic, "-"},
}

func TestMSALPython(t *testing.T) {
	needClient(t, "python3-msal", "apt-get install python3-msal", "/usr/lib/python3/dist-packages/msal")
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			origin, ca, client := httpsEmulator(t)
			cmd := exec.Command("/usr/bin/python3", filepath.Join("..", "testdata", "msal", "msal_python.py"),
				origin+"/contoso.onmicrosoft.com/B2C_1_susi", c.id, c.secret, msalReturn, "https://contoso.onmicrosoft.com/tasks/tasks.read")
			cmd.Env = append(os.Environ(), "REQUESTS_CA_BUNDLE="+ca)
			checkMSALResult(t, runMSAL(t, cmd, client))
		})
	}
}

func TestMSALNode(t *testing.T) {
	dir := filepath.Join("..", "testdata", "msal")
	needClient(t, "@azure/msal-node", "cd testdata/msal && npm ci", filepath.Join(dir, "node_modules", "@azure", "msal-node"))
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			origin, ca, client := httpsEmulator(t)
			cmd := exec.Command("node", "msal_node.mjs",
				origin+"/contoso.onmicrosoft.com/B2C_1_susi", c.id, c.secret, msalReturn, "openid offline_access https://contoso.onmicrosoft.com/tasks/tasks.read")
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "NODE_EXTRA_CA_CERTS="+ca)
			checkMSALResult(t, runMSAL(t, cmd, client))
		})
	}
}

// runMSALApp runs a client-credentials script and checks the app-only token
// MSAL got: for the API, issued to the client, with the API's app role in
// scp, as B2C issues it.
func runMSALApp(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var res msalResult
	if err := json.Unmarshal(out, &res); err != nil || res.Error != "" {
		t.Fatalf("MSAL: %s %s %v", res.Error, res.ErrorDescription, err)
	}
	at := jwtClaims(res.AccessToken)
	if at["aud"] != msalAPI || at["azp"] != msalClient || at["scp"] != "tasks.read.all" || at["oid"] != nil || at["sub"] == nil {
		t.Errorf("app-only token claims %v", at)
	}
}

func TestMSALPythonClientCredentials(t *testing.T) {
	needClient(t, "python3-msal", "apt-get install python3-msal", "/usr/lib/python3/dist-packages/msal")
	origin, ca, _ := httpsEmulator(t)
	cmd := exec.Command("/usr/bin/python3", filepath.Join("..", "testdata", "msal", "msal_python_app.py"),
		origin+"/contoso.onmicrosoft.com/B2C_1_susi", msalClient, msalSecret, "https://contoso.onmicrosoft.com/tasks/.default")
	cmd.Env = append(os.Environ(), "REQUESTS_CA_BUNDLE="+ca)
	runMSALApp(t, cmd)
}

func TestMSALNodeClientCredentials(t *testing.T) {
	dir := filepath.Join("..", "testdata", "msal")
	needClient(t, "@azure/msal-node", "cd testdata/msal && npm ci", filepath.Join(dir, "node_modules", "@azure", "msal-node"))
	origin, ca, _ := httpsEmulator(t)
	cmd := exec.Command("node", "msal_node_app.mjs",
		origin+"/contoso.onmicrosoft.com/B2C_1_susi", msalClient, msalSecret, "https://contoso.onmicrosoft.com/tasks/.default")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NODE_EXTRA_CA_CERTS="+ca)
	runMSALApp(t, cmd)
}

// TestMSALNodeWorkloadIdentityFederation: Microsoft's MSAL for Node gets a
// user-assigned managed identity's token from the emulator's managed
// identity endpoint (App Service's shape, through IDENTITY_ENDPOINT and
// IDENTITY_HEADER) and uses it as the client assertion of an app the
// Entra ID flavor registers with a federated credential for that identity.
func TestMSALNodeWorkloadIdentityFederation(t *testing.T) {
	dir := filepath.Join("..", "testdata", "msal")
	needClient(t, "@azure/msal-node", "cd testdata/msal && npm ci", filepath.Join(dir, "node_modules", "@azure", "msal-node"))
	certDir := t.TempDir()
	caFile, certFile, keyFile := testcaddy.TestCA(t, certDir)
	origin := fmt.Sprintf("https://127.0.0.1:%d", testcaddy.FreePort(t))
	testcaddy.Start(t, testcaddy.GlobalsHTTPS(certDir)+fmt.Sprintf(`
%s {
	tls %s %s
	b2c_emulator {
		flavor entra_id
		tenant_id %s
		admin_key test-admin-key
		managed_identity %[5]s %[6]s
		client %[7]s {
			federated_credential %[1]s/%[4]s/v2.0 %[6]s
			redirect_uri %[8]s
		}
	}
}
`, origin, certFile, keyFile, fedTenant, identityClient, identityObject, fedClient, msalReturn))
	cmd := exec.Command("node", "msal_node_federated.mjs", origin+"/contoso.onmicrosoft.com", fedClient, identityClient)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "NODE_EXTRA_CA_CERTS="+caFile,
		"IDENTITY_ENDPOINT="+origin+"/metadata/identity/oauth2/token", "IDENTITY_HEADER=test-admin-key")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	var res struct {
		AccessToken      string `json:"access_token"`
		Assertion        string `json:"assertion"`
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	if err := json.Unmarshal(out, &res); err != nil || res.Error != "" || res.AccessToken == "" {
		t.Fatalf("MSAL: %s %s %v (%s)", res.Error, res.ErrorDescription, err, out)
	}
	if a := jwtClaims(res.Assertion); a["aud"] != "api://AzureADTokenExchange" || a["sub"] != identityObject || a["xms_mirid"] == nil {
		t.Errorf("the managed identity's token: %v", a)
	}
	if at := jwtClaims(res.AccessToken); at["azp"] != fedClient || at["aud"] != fedClient {
		t.Errorf("the app-only token: %v", at)
	}
}

// TestMSALCertificateCredentials: Microsoft's MSAL for Python and for Node
// get app-only tokens from the Entra ID flavor with a certificate, twice in
// a row — Python names it by its SHA-1 thumbprint in padded URL-safe
// base64 (RS256), Node by its SHA-256 one (PS256), and both send the same
// assertion for the second request, as Entra accepts.
func TestMSALCertificateCredentials(t *testing.T) {
	dir := filepath.Join("..", "testdata", "msal")
	needClient(t, "python3-msal", "apt-get install python3-msal", "/usr/lib/python3/dist-packages/msal")
	needClient(t, "@azure/msal-node", "cd testdata/msal && npm ci", filepath.Join(dir, "node_modules", "@azure", "msal-node"))
	certDir := t.TempDir()
	caFile, serverCert, serverKey := testcaddy.TestCA(t, certDir)
	cert, key := testcaddy.Certificate(t)
	origin := fmt.Sprintf("https://127.0.0.1:%d", testcaddy.FreePort(t))
	testcaddy.Start(t, testcaddy.GlobalsHTTPS(certDir)+fmt.Sprintf(`
%s {
	tls %s %s
	b2c_emulator {
		flavor entra_id
		tenant_id %s
		client %s {
			certificate %s
			redirect_uri %s
		}
	}
}
`, origin, serverCert, serverKey, fedTenant, certClient, cert, msalReturn))
	certPEM, _ := os.ReadFile(cert)
	block, _ := pem.Decode(certPEM)
	s1, s256 := sha1.Sum(block.Bytes), sha256.Sum256(block.Bytes)
	authority := origin + "/contoso.onmicrosoft.com"
	scope := certClient + "/.default"

	python := exec.Command("/usr/bin/python3", filepath.Join(dir, "msal_python_cert.py"), authority, certClient, key, hex.EncodeToString(s1[:]), scope)
	python.Env = append(os.Environ(), "REQUESTS_CA_BUNDLE="+caFile)
	node := exec.Command("node", "msal_node_cert.mjs", authority, certClient, key, hex.EncodeToString(s256[:]), scope)
	node.Dir = dir
	node.Env = append(os.Environ(), "NODE_EXTRA_CA_CERTS="+caFile)
	for name, cmd := range map[string]*exec.Cmd{"MSAL Python": python, "MSAL Node": node} {
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		var res struct {
			Tokens           []string `json:"tokens"`
			Error            string   `json:"error"`
			ErrorDescription string   `json:"error_description"`
		}
		if err != nil || json.Unmarshal(out, &res) != nil || res.Error != "" || len(res.Tokens) != 2 || res.Tokens[0] == res.Tokens[1] {
			t.Errorf("%s: %v %s %s (%s)", name, err, res.Error, res.ErrorDescription, out)
		}
	}
}
