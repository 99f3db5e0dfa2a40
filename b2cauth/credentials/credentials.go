// Package credentials is how the app proves itself at a token endpoint:
// one concept, whatever is configured, used by every token request the
// plugin makes (code redemption, refresh, the Microsoft Graph token,
// `caddy b2c check`).
//
//   - A client secret (client_secret_post).
//   - A certificate: an RFC 7523 client assertion (private_key_jwt) signed
//     as Microsoft's certificate-credentials document says — `alg` PS256,
//     `typ` JWT, `x5t#S256` the SHA-256 thumbprint of the certificate's DER;
//     `aud` the token endpoint, `iss` = `sub` = the client ID, a unique
//     `jti`, `nbf` now and `exp` 5 minutes later.
//   - A federated token as the assertion (workload identity federation):
//     read from a file (AKS workload identity mounts one and rotates it), or
//     obtained from the platform's managed identity endpoint for
//     api://AzureADTokenExchange.
package credentials

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
)

// AssertionType is the client_assertion_type of a JWT client assertion.
const AssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// Credential adds the client's authentication to a token request's form.
type Credential interface {
	// Apply sets the form's client authentication for a request to
	// tokenEndpoint (the audience of a signed assertion).
	Apply(ctx context.Context, form url.Values, tokenEndpoint string) error
	// Describe says which credential is in use, with nothing secret.
	Describe() string
}

// Secret is a client secret.
type Secret string

func (s Secret) Apply(_ context.Context, form url.Values, _ string) error {
	form.Set("client_secret", string(s))
	return nil
}

func (Secret) Describe() string { return "client secret" }

// Certificate signs client assertions with a certificate's private key. The
// files are read again when they change (a renewed certificate is picked
// up without a restart).
type Certificate struct {
	ClientID, CertFile, KeyFile string
	Now                         func() time.Time

	mu       sync.Mutex
	modified [2]time.Time
	loaded   *loadedCertificate
}

type loadedCertificate struct {
	key *rsa.PrivateKey
	CertificateInfo
}

// CertificateInfo is what a user needs to know of a certificate credential
// to register it.
type CertificateInfo struct {
	Subject             string
	Thumbprint          string // SHA-1 of the DER in hex: what the Entra admin center shows
	S256                string // base64url SHA-256 of the DER: the assertions' x5t#S256
	NotBefore, NotAfter time.Time
	KeyBits             int
}

// load returns the certificate and key, read again if a file changed.
func (c *Certificate) load() (*loadedCertificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var mod [2]time.Time
	for i, p := range []string{c.CertFile, c.KeyFile} {
		st, err := os.Stat(p)
		if err != nil {
			if c.loaded != nil {
				return c.loaded, nil // mid-rotation: keep what worked
			}
			return nil, err
		}
		mod[i] = st.ModTime()
	}
	if c.loaded != nil && mod == c.modified {
		return c.loaded, nil
	}
	l, err := loadCertificate(c.CertFile, c.KeyFile)
	if err != nil {
		if c.loaded != nil {
			return c.loaded, nil
		}
		return nil, err
	}
	c.loaded, c.modified = l, mod
	return l, nil
}

// ExposedKeyFile tells, for a private key file that group or other users
// may read or write, its permissions and a sentence that says so; "" when
// the file is its owner's alone (or its mode cannot be read, as on
// Windows, where permissions are ACLs).
func ExposedKeyFile(keyFile string) string {
	info, err := os.Stat(keyFile)
	if err != nil || runtime.GOOS == "windows" {
		return ""
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Sprintf("the private key file %s has mode %#o: other users of this machine can read it; chmod 600 it (owned by the user Caddy runs as)", keyFile, perm)
	}
	return ""
}

// InspectCertificate reads a certificate credential's files, checks that
// they belong together and tells what registering it needs.
func InspectCertificate(certFile, keyFile string) (CertificateInfo, error) {
	l, err := loadCertificate(certFile, keyFile)
	if err != nil {
		return CertificateInfo{}, err
	}
	return l.CertificateInfo, nil
}

// loadCertificate reads a PEM certificate and its PEM RSA private key
// (PKCS#8, or PKCS#1), and checks that they belong together.
func loadCertificate(certFile, keyFile string) (*loadedCertificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	var cert *x509.Certificate
	for rest := certPEM; cert == nil; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			return nil, fmt.Errorf("%s: no PEM CERTIFICATE block", certFile)
		}
		if block.Type == "CERTIFICATE" {
			if cert, err = x509.ParseCertificate(block.Bytes); err != nil {
				return nil, fmt.Errorf("%s: %v", certFile, err)
			}
		}
	}
	var key *rsa.PrivateKey
	for rest := keyPEM; key == nil; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			return nil, fmt.Errorf("%s: no PEM PRIVATE KEY block", keyFile)
		}
		switch block.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", keyFile, err)
			}
			rk, ok := k.(*rsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("%s: not an RSA key (Microsoft Entra certificate credentials are RSA)", keyFile)
			}
			key = rk
		case "RSA PRIVATE KEY":
			if key, err = x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
				return nil, fmt.Errorf("%s: %v", keyFile, err)
			}
		}
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, fmt.Errorf("%s is not the key of %s", keyFile, certFile)
	}
	s256 := sha256.Sum256(cert.Raw)
	return &loadedCertificate{key: key, CertificateInfo: CertificateInfo{Subject: cert.Subject.String(),
		Thumbprint: sha1Thumbprint(cert.Raw), S256: base64.RawURLEncoding.EncodeToString(s256[:]),
		NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, KeyBits: key.N.BitLen()}}, nil
}

// Apply signs a fresh assertion for this token endpoint.
func (c *Certificate) Apply(_ context.Context, form url.Values, tokenEndpoint string) error {
	l, err := c.load()
	if err != nil {
		return fmt.Errorf("client_certificate: %w", err)
	}
	now := time.Now()
	if c.Now != nil {
		now = c.Now()
	}
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	jti[6], jti[8] = jti[6]&0x0f|0x40, jti[8]&0x3f|0x80 // a v4 GUID, as the document shows
	header, _ := json.Marshal(map[string]string{"alg": "PS256", "typ": "JWT", "x5t#S256": l.S256})
	claims, _ := json.Marshal(map[string]any{
		"aud": tokenEndpoint, "iss": c.ClientID, "sub": c.ClientID, "jti": guid(jti),
		"nbf": now.Unix(), "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	})
	signing := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(claims)
	digest := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPSS(rand.Reader, l.key, crypto.SHA256, digest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	if err != nil {
		return fmt.Errorf("client_certificate: signing: %w", err)
	}
	form.Set("client_assertion_type", AssertionType)
	form.Set("client_assertion", signing+"."+base64.RawURLEncoding.EncodeToString(sig))
	return nil
}

func (c *Certificate) Describe() string {
	l, err := c.load()
	if err != nil {
		return "certificate " + c.CertFile + " (unreadable: " + err.Error() + ")"
	}
	return fmt.Sprintf("certificate %s (thumbprint %s, expires %s)", c.CertFile, l.Thumbprint, l.NotAfter.UTC().Format("2006-01-02"))
}

// Thumbprint is what the Entra admin center shows for an uploaded
// certificate (SHA-1 of its DER, hex), and when it expires.
func (c *Certificate) Thumbprint() (string, time.Time, error) {
	l, err := c.load()
	if err != nil {
		return "", time.Time{}, err
	}
	return l.Thumbprint, l.NotAfter, nil
}

func guid(b []byte) string {
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// AssertionFile is a federated token read from a file, read again for
// every token request: Kubernetes rotates a projected service-account
// token on disk (AKS workload identity names it in
// AZURE_FEDERATED_TOKEN_FILE), and a request is rare enough.
type AssertionFile string

func (f AssertionFile) Apply(_ context.Context, form url.Values, _ string) error {
	data, err := os.ReadFile(string(f))
	if err != nil {
		return fmt.Errorf("client_assertion file: %w", err)
	}
	token := strings.TrimSpace(string(data))
	if strings.Count(token, ".") != 2 {
		return fmt.Errorf("client_assertion file %s: not a JWT", string(f))
	}
	form.Set("client_assertion_type", AssertionType)
	form.Set("client_assertion", token)
	return nil
}

func (f AssertionFile) Describe() string { return "federated token from the file " + string(f) }

// errNoToken is a managed identity endpoint's answer without a token.
var errNoToken = errors.New("no access_token in the answer")
