// Package testcaddy runs a real Caddy in the test process and drives it
// like a browser would: the shared support of the project's integration
// tests. Caddy's configuration is global, so tests using it must not run in
// parallel.
package testcaddy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"html"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	// The modules a test config may use.
	_ "github.com/caddy-b2c/caddy-b2c"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// FreePort returns a TCP port that was free a moment ago on 127.0.0.1 and
// that no other test process took in the last ten minutes. Caddy listens
// with SO_REUSEPORT, so two test binaries (go test runs packages in
// parallel) that picked the same port would share it silently: each port
// handed out is claimed with a marker file that other processes respect.
func FreePort(t TB) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if claimPort(port) {
			return port
		}
	}
	t.Fatal("no free port that another test process has not claimed")
	return 0
}

// claimPort marks a port as taken by this process; false if another
// process claimed it recently.
func claimPort(port int) bool {
	dir := filepath.Join(os.TempDir(), "caddy-b2c-test-ports")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return true // no markers possible: fall back to the kernel's choice
	}
	marker := filepath.Join(dir, strconv.Itoa(port))
	f, err := os.OpenFile(marker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err == nil {
		f.Close()
		return true
	}
	if info, err := os.Stat(marker); err == nil && time.Since(info.ModTime()) > 10*time.Minute {
		now := time.Now()
		return os.Chtimes(marker, now, now) == nil // a stale claim: take it over
	}
	return false
}

// Globals is the global options block every test config starts with: no
// admin endpoint, and Caddy's storage in dir.
func Globals(dir string) string {
	return fmt.Sprintf("{\n\tadmin off\n\tstorage file_system %q\n\tskip_install_trust\n\tpersist_config off\n\tlog default {\n\t\tlevel ERROR\n\t}\n}\n", dir)
}

// GlobalsHTTPS is Globals for configs with HTTPS sites: HTTP/1.1 and 2
// only, because Caddy 2.11.9 starting HTTP/3 while serving its first
// request is a data race that -race reports.
func GlobalsHTTPS(dir string) string {
	return strings.Replace(Globals(dir), "\tadmin off\n", "\tadmin off\n\tservers {\n\t\tprotocols h1 h2\n\t}\n", 1)
}

// Require skips a test whose outside program is missing, saying how to
// install it, except under CI, where every test must run and its absence
// fails the test.
func Require(t testing.TB, what, install string, found bool) {
	t.Helper()
	if found {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is required under CI (%s)", what, install)
	}
	t.Skipf("%s is not installed (%s); CI runs this test", what, install)
}

// Adapt turns a Caddyfile into JSON, failing the test on error.
func Adapt(t TB, caddyfile string) []byte {
	t.Helper()
	adapter := caddyconfig.GetAdapter("caddyfile")
	cfg, _, err := adapter.Adapt([]byte(caddyfile), nil)
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v\n%s", err, caddyfile)
	}
	return cfg
}

// Start loads a Caddyfile into this process's Caddy; it is stopped when the
// test ends. Caddy has bound its listeners when Start returns.
func Start(t testing.TB, caddyfile string) {
	t.Helper()
	if err := caddy.Load(Adapt(t, caddyfile), true); err != nil {
		t.Fatalf("starting Caddy: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
}

// TB is the part of testing.TB a Browser needs, so that programs (the load
// test) can drive one too.
type TB interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

// Browser is an HTTP client with a cookie jar that follows redirects one
// step at a time and sends what a browser sends on a navigation.
type Browser struct {
	T      TB
	Client *http.Client
	Jar    *cookiejar.Jar
}

// NewBrowser makes a browser with an empty cookie jar.
func NewBrowser(t TB) *Browser {
	jar, _ := cookiejar.New(nil)
	return &Browser{T: t, Jar: jar, Client: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Copy is another browser holding copies of the cookies this one sends to
// u: a second tab, or an attacker who took them.
func (b *Browser) Copy(u string) *Browser {
	b.T.Helper()
	target, err := url.Parse(u)
	if err != nil {
		b.T.Fatal(err)
	}
	c := NewBrowser(b.T)
	c.Jar.SetCookies(target, b.Jar.Cookies(target))
	return c
}

// Response is a fetched response with its body read.
type Response struct {
	*http.Response
	Body string
}

// Do sends a request as a navigation (Accept: text/html) and reads the answer.
func (b *Browser) Do(method, u string, form url.Values) *Response {
	b.T.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		b.T.Fatal(err)
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.Client.Do(req)
	if err != nil {
		b.T.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return &Response{Response: resp, Body: string(data)}
}

// Get fetches a URL without following redirects.
func (b *Browser) Get(u string) *Response { return b.Do(http.MethodGet, u, nil) }

// Follow fetches a URL and follows redirects and auto-submitting forms
// (form_post) until a page that is neither; it fails the test after 20 hops.
func (b *Browser) Follow(u string) *Response {
	b.T.Helper()
	return b.FollowResponse(b.Get(u), u)
}

// FollowResponse continues from a response, as Follow does.
func (b *Browser) FollowResponse(resp *Response, from string) *Response {
	b.T.Helper()
	for range 20 {
		switch {
		case resp.StatusCode >= 300 && resp.StatusCode < 400:
			next, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
			if err != nil {
				b.T.Fatalf("bad Location %q", resp.Header.Get("Location"))
			}
			from = next.String()
			resp = b.Get(from)
		case strings.Contains(resp.Body, `document.forms[0].submit()"`): // an auto-submitting form (form_post)
			action, fields := Form(b.T, resp.Body)
			target, _ := resp.Request.URL.Parse(action)
			if formGet.MatchString(resp.Body) {
				target.RawQuery = fields.Encode()
				from = target.String()
				resp = b.Get(from)
				continue
			}
			from = target.String()
			resp = b.Do(http.MethodPost, from, fields)
		default:
			return resp
		}
	}
	b.T.Fatalf("too many redirects from %s", from)
	return nil
}

var (
	formAction = regexp.MustCompile(`<form[^>]*action="([^"]*)"`)
	formGet    = regexp.MustCompile(`<form[^>]*method="get"`)
	formInput  = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)"\s*/?>`)
)

// Form extracts the first form's action and hidden fields from a page.
func Form(t TB, page string) (string, url.Values) {
	t.Helper()
	m := formAction.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no form in page:\n%s", page)
	}
	fields := url.Values{}
	for _, in := range formInput.FindAllStringSubmatch(page, -1) {
		fields.Add(html.UnescapeString(in[1]), html.UnescapeString(in[2]))
	}
	return html.UnescapeString(m[1]), fields
}

// Submit posts the page's form with extra fields, as the emulator's pages
// expect: to the page's own URL.
func (b *Browser) Submit(page *Response, extra map[string]string) *Response {
	b.T.Helper()
	_, fields := Form(b.T, page.Body)
	for k, v := range extra {
		fields.Set(k, v)
	}
	return b.Do(http.MethodPost, page.Request.URL.String(), fields)
}

// SubmitVerified fills in an emulator page that proves the email first
// (sign-up, password reset), as a user does: it sends the verification
// code, reads it from the emulator's mailbox page, and submits the form
// with the code and the other fields.
func (b *Browser) SubmitVerified(page *Response, email string, extra map[string]string) *Response {
	b.T.Helper()
	mailbox := Link(b.T, page, "mailbox")
	sent := b.Submit(page, map[string]string{"email": email})
	if !strings.Contains(sent.Body, `id="verificationSent"`) {
		b.T.Fatalf("no verification code was sent to %s:\n%s", email, sent.Body)
	}
	fields := map[string]string{"code": MailboxCode(b.T, b.Get(mailbox).Body, email)}
	for k, v := range extra {
		fields[k] = v
	}
	return b.Submit(sent, fields)
}

// SubmitSecondFactor answers an emulator page that asks for a second
// factor: the one-time code it sent, read from its mailbox page.
func (b *Browser) SubmitSecondFactor(page *Response, email string) *Response {
	b.T.Helper()
	if !strings.Contains(page.Body, `value="mfa"`) {
		b.T.Fatalf("no second factor asked:\n%s", page.Body)
	}
	return b.Submit(page, map[string]string{"code": MailboxCode(b.T, b.Get(Link(b.T, page, "mailbox")).Body, email)})
}

// MailboxCode is the newest verification code the emulator's mailbox page
// shows for an address.
func MailboxCode(t TB, mailbox, email string) string {
	t.Helper()
	re := regexp.MustCompile(`data-to="` + regexp.QuoteMeta(html.EscapeString(email)) + `"[^>]*>[^<]*<code class="verification-code">(\d{6})</code>`)
	m := re.FindStringSubmatch(mailbox)
	if m == nil {
		t.Fatalf("no code for %s in the mailbox:\n%s", email, mailbox)
	}
	return m[1]
}

// Link finds an anchor's href by its id and resolves it against the page.
func Link(t TB, page *Response, id string) string {
	t.Helper()
	re := regexp.MustCompile(`id="` + regexp.QuoteMeta(id) + `" href="([^"]*)"`)
	m := re.FindStringSubmatch(page.Body)
	if m == nil {
		t.Fatalf("no link #%s in page:\n%s", id, page.Body)
	}
	u, err := page.Request.URL.Parse(html.UnescapeString(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	return u.String()
}

// TestCA writes, in dir, a certificate authority made for the test and a
// certificate it signed for localhost and 127.0.0.1, valid for an hour:
// HTTPS sites whose certificate is there as soon as Caddy starts (tls
// internal issues its own in the background), and a root to trust.
func TestCA(t TB, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	write := func(name, kind string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "caddy-b2c test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(leafKey)
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", leafDER), write("key.pem", "PRIVATE KEY", keyDER)
}

// WaitForLog polls a log file until it holds every one of want (a line
// that the config logs once it runs), failing the test with the log after
// 10 s. It polls a file; it does not wait for a server.
func WaitForLog(t testing.TB, file string, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(file)
		found := true
		for _, w := range want {
			found = found && strings.Contains(string(data), w)
		}
		if found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log lacks %q:\n%s", want, data)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
