package b2cauth_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
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

// TestMSALAnswersTheClaimsChallenge: Microsoft's MSAL for Python, as
// Microsoft's samples use it (client_capabilities CP1), calls an API that
// b2c_auth protects with require_auth_context c1: its first token gets 401
// with the claims challenge, MSAL signs in again with that challenge (the
// emulator asks for the second factor), and the new token, which carries
// acrs c1, opens the API.
func TestMSALAnswersTheClaimsChallenge(t *testing.T) {
	testcaddy.Require(t, "python3-msal", "apt-get install python3-msal", fileExists("/usr/lib/python3/dist-packages/msal"))
	const (
		app      = "5c0ffee5-1111-4222-8333-944455550001"
		api      = "a0b1c2d3-0000-4000-8000-00000000a0a1"
		appURL   = "http://localhost:9999/msal"
		tasksURI = "https://contoso.onmicrosoft.com/tasks"
	)
	dir := t.TempDir()
	caFile, certFile, keyFile := testcaddy.TestCA(t, dir)
	idp := fmt.Sprintf("https://127.0.0.1:%d", testcaddy.FreePort(t))
	site := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	testcaddy.Start(t, testcaddy.GlobalsHTTPS(dir)+fmt.Sprintf(`
%[1]s {
	tls %[2]s %[3]s
	b2c_emulator {
		flavor entra_id
		tenant_id %[4]s
		auth_contexts c1
		client %[5]s s3cret {
			redirect_uri %[6]s
		}
		api %[7]s %[8]s {
			scopes tasks.read
		}
		user ada@contoso.example Passw0rd!
	}
}
%[9]s {
	b2c_auth {
		issuer %[1]s/contoso.onmicrosoft.com/v2.0
		client_id %[8]s
		require_auth_context c1
		tls_trust_pool file %[10]s
	}
	respond "tasks for {http.auth.user.preferred_username}"
}
`, idp, certFile, keyFile, emulatorTenantID, app, appURL, tasksURI, api, site, caFile))

	cmd := exec.Command("/usr/bin/python3", filepath.Join("..", "testdata", "msal", "msal_python_claims.py"),
		idp+"/contoso.onmicrosoft.com", app, "s3cret", appURL, tasksURI+"/tasks.read", site+"/api/tasks")
	cmd.Env = append(os.Environ(), "REQUESTS_CA_BUNDLE="+caFile)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	lines.Buffer(make([]byte, 1<<20), 1<<20)

	pem, _ := os.ReadFile(caFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	b := testcaddy.NewBrowser(t)
	b.Client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	// browse follows an authorize URL the script printed like a person:
	// the password the first time, the second factor the second (single
	// sign-on), and hands the script where the browser ended.
	browse := func(secondFactor bool) {
		var start struct {
			AuthURI string `json:"auth_uri"`
		}
		if !lines.Scan() || json.Unmarshal(lines.Bytes(), &start) != nil || start.AuthURI == "" {
			t.Fatalf("no authorize URL from MSAL: %q", lines.Text())
		}
		page := b.Get(start.AuthURI)
		var done *testcaddy.Response
		if secondFactor {
			done = b.SubmitSecondFactor(page, "ada@contoso.example")
		} else {
			done = b.Submit(page, map[string]string{"email": "ada@contoso.example", "password": "Passw0rd!"})
		}
		if back := done.Header.Get("Location"); strings.HasPrefix(back, appURL+"?") {
			_, _ = io.WriteString(stdin, back+"\n")
			return
		}
		t.Fatalf("the emulator did not send the browser back: %d %s", done.StatusCode, done.Body)
	}
	browse(false)
	browse(true)
	var res struct {
		FirstStatus      int    `json:"first_status"`
		Challenge        string `json:"challenge"`
		Claims           string `json:"claims"`
		Status           int    `json:"status"`
		Body             string `json:"body"`
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	if !lines.Scan() || json.Unmarshal(lines.Bytes(), &res) != nil {
		t.Fatalf("no result from MSAL: %q", lines.Text())
	}
	if res.FirstStatus != http.StatusUnauthorized || res.Claims != `{"access_token":{"acrs":{"essential":true,"value":"c1"}}}` {
		t.Errorf("the first call: %d, challenge %s", res.FirstStatus, res.Challenge)
	}
	if res.Status != http.StatusOK || res.Body != "tasks for ada@contoso.example" {
		t.Errorf("after answering the challenge: %d %q (%s %s)", res.Status, res.Body, res.Error, res.ErrorDescription)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
