package caddyb2c_test

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-b2c/caddy-b2c/b2cemulator"
	"github.com/caddy-b2c/caddy-b2c/internal/testcaddy"
)

// b2c runs `caddy b2c <args>` as Caddy's command line would, and returns
// its output and error.
func b2c(t *testing.T, args ...string) (string, error) {
	t.Helper()
	c, ok := caddycmd.Commands()["b2c"]
	if !ok {
		t.Fatal("caddy b2c is not registered")
	}
	cmd := &cobra.Command{Use: "b2c"}
	c.CobraFunc(cmd)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestSecretCommand(t *testing.T) {
	out, err := b2c(t, "secret")
	key, decodeErr := base64.StdEncoding.DecodeString(strings.TrimSpace(out))
	if err != nil || decodeErr != nil || len(key) != 32 {
		t.Errorf("caddy b2c secret: %q %v", out, err)
	}
}

// TestCheckCommand: `caddy b2c check` against the emulator passes a good
// config and fails, saying what to fix, on an unregistered redirect URI, an
// unknown policy, an unreachable provider and an unset {env.X}.
func TestCheckCommand(t *testing.T) {
	idp := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	registered := testcaddy.FreePort(t)
	testcaddy.Start(t, testcaddy.Globals(t.TempDir())+fmt.Sprintf(`
%s {
	b2c_emulator {
		client app-1 {
			redirect_uri http://localhost:%[2]d/.auth/login/b2c/callback
		}
		client web-1 right-s3cret {
			redirect_uri http://localhost:%[2]d/.auth/login/b2c/callback
		}
	}
}
`, idp, registered))
	check := func(site, auth string) (string, error) {
		file := filepath.Join(t.TempDir(), "Caddyfile")
		cfg := fmt.Sprintf("%s {\n\tb2c_auth {\n\t\t%s\n\t}\n\trespond hi\n}\n", site, auth)
		if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		return b2c(t, "check", "--config", file, "--adapter", "caddyfile")
	}
	good := fmt.Sprintf("authority %s/contoso.onmicrosoft.com\n\t\tpolicy B2C_1_susi\n\t\tclient_id app-1", idp)
	site := fmt.Sprintf("http://localhost:%d", registered)
	out, err := check(site, good)
	if err != nil || !strings.Contains(out, "issuer "+idp+"/") || !strings.Contains(out, "accepted") || !strings.Contains(out, "signing key") {
		t.Errorf("a good config: %v\n%s", err, out)
	}
	// Without --config, the Caddyfile of the current directory, as Caddy's
	// own commands do.
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(fmt.Sprintf("%s {\n\tb2c_auth {\n\t\t%s\n\t}\n\trespond hi\n}\n", site, good)), 0o600)
	t.Chdir(dir)
	if out, err := b2c(t, "check"); err != nil || !strings.Contains(out, "accepted") {
		t.Errorf("check without --config: %v\n%s", err, out)
	}
	// A wrong client secret is found before a user meets it.
	if out, err := check(site, strings.Replace(good, "client_id app-1", "client_id web-1\n\t\tclient_secret wrong", 1)); err == nil || !strings.Contains(out, "client_secret was refused") || !strings.Contains(out, "AADB2C90081") {
		t.Errorf("a wrong secret: %v\n%s", err, out)
	}
	if out, err := check(site, strings.Replace(good, "client_id app-1", "client_id web-1\n\t\tclient_secret right-s3cret", 1)); err != nil || !strings.Contains(out, "client_secret accepted") {
		t.Errorf("the right secret: %v\n%s", err, out)
	}
	// A client ID the tenant does not have is named as such, not as a wrong secret.
	if out, err := check(site, strings.Replace(good, "client_id app-1", "client_id web-2\n\t\tclient_secret right-s3cret", 1)); err == nil || !strings.Contains(out, "client_id web-2 is not registered") || strings.Contains(out, "client_secret was refused") {
		t.Errorf("an unknown client ID: %v\n%s", err, out)
	}
	// A handler that answers before b2c_auth inside route: the check names both.
	file := filepath.Join(t.TempDir(), "Caddyfile")
	_ = os.WriteFile(file, []byte(fmt.Sprintf("%s {\n\troute {\n\t\tfile_server\n\t\tb2c_auth {\n\t\t%s\n\t\t}\n\t}\n}\n", site, good)), 0o600)
	if out, err := b2c(t, "check", "--config", file, "--adapter", "caddyfile"); err == nil || !strings.Contains(out, "file_server (every request) answers before b2c_auth") {
		t.Errorf("an order mistake: error %v:\n%s", err, out)
	}
	// One that answers only some requests (a method matcher) fails it too.
	_ = os.WriteFile(file, []byte(fmt.Sprintf("%s {\n\troute {\n\t\t@post method POST\n\t\trespond @post \"secret\"\n\t\tb2c_auth {\n\t\t%s\n\t\t}\n\t}\n}\n", site, good)), 0o600)
	if out, err := b2c(t, "check", "--config", file, "--adapter", "caddyfile"); err == nil || !strings.Contains(out, "respond (matched on method) may answer before b2c_auth") {
		t.Errorf("a conditional order mistake: error %v:\n%s", err, out)
	}
	for name, tc := range map[string]struct{ site, auth, want string }{
		"unregistered redirect URI": {fmt.Sprintf("http://localhost:%d", registered+1), good, "is not registered"},
		"unknown policy":            {site, strings.Replace(good, "B2C_1_susi", "B2C_1_nope", 1), "AADB2C90022"},
		"unreachable provider":      {site, strings.Replace(good, idp, fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t)), 1), "metadata at"},
		"unset placeholder":         {site, good + "\n\t\tclient_secret {env.B2C_CHECK_SURELY_UNSET}", "client_secret: a placeholder is not set"},
	} {
		out, err := check(tc.site, tc.auth)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("%s: error %v, want a problem saying %q:\n%s", name, err, tc.want, out)
		}
	}
}

// TestEmulatorCommand: `caddy b2c emulator` serves a tenant and says how to
// use it, until interrupted.
func TestEmulatorCommand(t *testing.T) {
	listen := fmt.Sprintf("127.0.0.1:%d", testcaddy.FreePort(t))
	cmd := &cobra.Command{Use: "b2c"}
	caddycmd.Commands()["b2c"].CobraFunc(cmd)
	pr, pw := io.Pipe()
	cmd.SetOut(pw)
	cmd.SetArgs([]string{"emulator", "--listen", listen, "--tenant", "fabrikam"})
	done := make(chan error, 1)
	go func() { done <- cmd.Execute(); pw.Close() }()

	// It prints once Caddy has bound its listener.
	var printed strings.Builder
	lines := bufio.NewScanner(pr)
	for lines.Scan() {
		printed.WriteString(lines.Text() + "\n")
		if strings.Contains(lines.Text(), "MSAL.js/Node") {
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	resp, err := http.Get("http://" + listen + "/fabrikam.onmicrosoft.com/B2C_1_susi/v2.0/.well-known/openid-configuration")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the emulator's metadata: %v", err)
	}
	resp.Body.Close()
	if !strings.Contains(printed.String(), "authority   http://"+listen+"/fabrikam.onmicrosoft.com") || !strings.Contains(printed.String(), "validate_authority=False") {
		t.Errorf("caddy b2c emulator printed:\n%s", printed.String())
	}
	// The admin key it prints rotates the keys; nothing else does.
	m := regexp.MustCompile(`admin key   ([0-9a-f]{32})`).FindStringSubmatch(printed.String())
	if m == nil {
		t.Fatalf("no admin key printed:\n%s", printed.String())
	}
	rotate := func(key string) int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+listen+"/fabrikam.onmicrosoft.com/emulator/rotate_keys", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if rotate("not-the-key") != http.StatusUnauthorized || rotate(m[1]) != http.StatusOK {
		t.Error("the printed admin key does not guard key rotation")
	}
	// A second one on the same address refuses to start (Caddy's listeners
	// would share the port and take half of the connections), and the
	// first goes on.
	second := &cobra.Command{Use: "b2c"}
	caddycmd.Commands()["b2c"].CobraFunc(second)
	second.SetOut(io.Discard)
	second.SetArgs([]string{"emulator", "--listen", listen})
	if err := second.Execute(); err == nil || !strings.Contains(err.Error(), listen+": something already answers there") {
		t.Errorf("a second emulator on %s: %v", listen, err)
	}
	if rotate(m[1]) != http.StatusOK {
		t.Error("the first emulator stopped answering")
	}
	// It listens on the loopback address asked for, not on the machine's
	// other addresses.
	_, port, _ := net.SplitHostPort(listen)
	if ip := nonLoopbackIP(); ip != "" {
		if conn, err := net.DialTimeout("tcp", net.JoinHostPort(ip, port), time.Second); err == nil {
			conn.Close()
			t.Errorf("the emulator answers on %s, not only on 127.0.0.1", ip)
		}
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("caddy b2c emulator: %v", err)
	}
}

// nonLoopbackIP is an address of this machine other than loopback, or "".
func nonLoopbackIP() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
	}
	return ""
}

// TestRevokeCommand: an operator signs a user out of every instance with
// `caddy b2c revoke --user`: the running Caddy that shares the config's
// storage refuses the user's session within its revocation_sync; another
// user's session stays.
func TestRevokeCommand(t *testing.T) {
	dir := t.TempDir()
	idp := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	site := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	config := testcaddy.Globals(dir) + fmt.Sprintf(`
%[1]s {
	b2c_emulator {
		client app-1 {
			redirect_uri %[2]s/.auth/login/b2c/callback
		}
		user ada@contoso.example Passw0rd! {
			object_id 6f1c2d3e-4a5b-4c6d-8e7f-901234567890
		}
		user bob@contoso.example Passw0rd!
	}
}
%[2]s {
	b2c_auth {
		authority %[1]s/contoso.onmicrosoft.com
		policy B2C_1_susi
		client_id app-1
		revocation_sync 1s
	}
	respond "id={http.auth.user.id}"
}
`, idp, site)
	testcaddy.Start(t, config)
	signIn := func(email string) *testcaddy.Browser {
		b := testcaddy.NewBrowser(t)
		page := b.Follow(site + "/")
		if landed := b.FollowResponse(b.Submit(page, map[string]string{"email": email, "password": "Passw0rd!"}), ""); landed.StatusCode != 200 {
			t.Fatalf("sign-in of %s: %d", email, landed.StatusCode)
		}
		return b
	}
	ada, bob := signIn("ada@contoso.example"), signIn("bob@contoso.example")

	file := filepath.Join(dir, "Caddyfile")
	_ = os.WriteFile(file, []byte(config), 0o600)
	out, err := b2c(t, "revoke", "--config", file, "--adapter", "caddyfile", "--user", "6f1c2d3e-4a5b-4c6d-8e7f-901234567890")
	if err != nil || !strings.Contains(out, "signed out 6f1c2d3e-4a5b-4c6d-8e7f-901234567890 everywhere") {
		t.Fatalf("caddy b2c revoke: %v\n%s", err, out)
	}
	deadline := time.Now().Add(5 * time.Second)
	for ada.Get(site+"/").StatusCode == 200 {
		if time.Now().After(deadline) {
			t.Fatal("the running instance still opens the revoked user's session")
		}
		time.Sleep(100 * time.Millisecond) // the next revocation_sync (1s) of the running Caddy
	}
	if r := bob.Get(site + "/"); r.StatusCode != 200 {
		t.Errorf("another user's session: %d", r.StatusCode)
	}
	if _, err := b2c(t, "revoke", "--config", file, "--adapter", "caddyfile"); err == nil {
		t.Error("revoke without --user was accepted")
	}
}

// TestCertificateCommand: `caddy b2c certificate` prints the thumbprint the
// Entra admin center shows (SHA-1 of the certificate's DER), the steps and
// the b2c_auth line, warns of a near expiry, never prints the key, and
// refuses a key that is not the certificate's.
func TestCertificateCommand(t *testing.T) {
	cert, key := testcaddy.Certificate(t)
	_, otherKey := testcaddy.Certificate(t)
	out, err := b2c(t, "certificate", cert, key, "--client-id", "11111111-2222-3333-4444-555555555555")
	if err != nil {
		t.Fatalf("caddy b2c certificate: %v\n%s", err, out)
	}
	pemData, _ := os.ReadFile(cert)
	block, _ := pem.Decode(pemData)
	sum := sha1.Sum(block.Bytes)
	keyPEM, _ := os.ReadFile(key)
	keyBody := strings.Split(string(keyPEM), "\n")[1]
	for _, want := range []string{
		"thumbprint  " + strings.ToUpper(hex.EncodeToString(sum[:])),
		"az ad app credential reset --id 11111111-2222-3333-4444-555555555555 --cert @" + cert + " --append",
		"client_certificate " + cert + " " + key,
		"warning: it expires in 1 days",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, keyBody) {
		t.Errorf("the output shows the private key:\n%s", out)
	}
	if out, err := b2c(t, "certificate", cert, otherKey); err == nil || !strings.Contains(err.Error(), "is not the key of") {
		t.Errorf("a key of another certificate: %v\n%s", err, out)
	}
	if strings.Contains(out, "other users of this machine can read it") {
		t.Errorf("a key file of mode 0600 was called readable by others:\n%s", out)
	}
	// A key file others can read: said, with what to do.
	if err := os.Chmod(key, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := b2c(t, "certificate", cert, key); err != nil || !strings.Contains(out, "warning: the private key file "+key+" has mode 0644: other users of this machine can read it; chmod 600") {
		t.Errorf("a key file readable by others: %v\n%s", err, out)
	}
}

// TestCheckProvesCredentialsWithoutASecret: `caddy b2c check` names the
// credential in use and proves it at the token endpoint: a registered
// certificate and a trusted federated token pass; an unregistered
// certificate and a token of an untrusted subject fail with Entra's code.
func TestCheckProvesCredentialsWithoutASecret(t *testing.T) {
	const app, workload = "66666666-7777-8888-9999-000000000000", "system:serviceaccount:web:caddy"
	cert, key := testcaddy.Certificate(t)
	otherCert, otherKey := testcaddy.Certificate(t)
	kube := testcaddy.NewIssuer(t)
	idp := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	site := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	testcaddy.Start(t, testcaddy.Globals(t.TempDir())+fmt.Sprintf(`%s {
	b2c_emulator {
		flavor entra_id
		client %s {
			certificate %s
			federated_credential %s %s
			redirect_uri %s/.auth/login/b2c/callback
		}
	}
}
`, idp, app, cert, kube.URL, workload, site))
	tokenFile := func(subject string) string {
		f := filepath.Join(t.TempDir(), "token")
		_ = os.WriteFile(f, []byte(kube.Token(t, subject, "api://AzureADTokenExchange", time.Hour)), 0o600)
		return f
	}
	for name, tc := range map[string]struct {
		credential, want string
		ok               bool
	}{
		"registered certificate":   {fmt.Sprintf("client_certificate %s %s", cert, key), "the certificate " + cert, true},
		"unregistered certificate": {fmt.Sprintf("client_certificate %s %s", otherCert, otherKey), "AADSTS700027", false},
		"trusted token":            {"client_assertion file " + tokenFile(workload), "the federated token from the file", true},
		"untrusted subject":        {"client_assertion file " + tokenFile("system:serviceaccount:web:other"), "AADSTS700213", false},
	} {
		file := filepath.Join(t.TempDir(), "Caddyfile")
		cfg := fmt.Sprintf("%s {\n\tb2c_auth {\n\t\tissuer %s/contoso.onmicrosoft.com/v2.0\n\t\tclient_id %s\n\t\t%s\n\t}\n\trespond hi\n}\n", site, idp, app, tc.credential)
		_ = os.WriteFile(file, []byte(cfg), 0o600)
		out, err := b2c(t, "check", "--config", file, "--adapter", "caddyfile")
		if (err == nil) != tc.ok || !strings.Contains(out, tc.want) || tc.ok != strings.Contains(out, "accepted by the token endpoint") {
			t.Errorf("%s: error %v, want ok=%v and %q:\n%s", name, err, tc.ok, tc.want, out)
		}
	}
}

// TestEmulatorPrintsSettingsForItsFlavor: what `caddy b2c emulator
// --flavor …` prints for b2c_auth passes `caddy b2c check` against an
// emulator of that flavor: a B2C authority and user flow for b2c, the
// identity platform's issuer (no policy) for external_id and entra_id.
func TestEmulatorPrintsSettingsForItsFlavor(t *testing.T) {
	for _, flavor := range []string{"b2c", "external_id", "entra_id"} {
		idp := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
		testcaddy.Start(t, testcaddy.Globals(t.TempDir())+fmt.Sprintf("%s {\n\tb2c_emulator {\n\t\ttenant fabrikam\n\t\tflavor %s\n\t}\n}\n", idp, flavor))
		settings := b2cemulator.ClientSettings(flavor, idp, "fabrikam")
		line, _, _ := strings.Cut(strings.SplitAfterN(settings, "b2c_auth:", 2)[1], "\n")
		fields := strings.Fields(line)
		var auth strings.Builder
		for i := 0; i+1 < len(fields); i += 2 {
			fmt.Fprintf(&auth, "\t\t%s %s\n", fields[i], fields[i+1])
		}
		if flavor != "b2c" && strings.Contains(line, "policy") {
			t.Errorf("%s: B2C settings printed: %s", flavor, line)
		}
		file := filepath.Join(t.TempDir(), "Caddyfile")
		_ = os.WriteFile(file, []byte(fmt.Sprintf("http://localhost:8080 {\n\tb2c_auth {\n%s\t}\n\trespond hi\n}\n", auth.String())), 0o600)
		if out, err := b2c(t, "check", "--config", file, "--adapter", "caddyfile"); err != nil || !strings.Contains(out, "accepted") {
			t.Errorf("%s: the printed settings (%s) fail caddy b2c check: %v\n%s", flavor, line, err, out)
		}
		_ = caddy.Stop()
	}
}
