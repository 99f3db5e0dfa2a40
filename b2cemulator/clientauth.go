package b2cemulator

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"
)

func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// assertionType is the client_assertion_type of a JWT client assertion.
const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// registeredCertificate is a certificate credential of a client, by its
// SHA-256 and SHA-1 thumbprints, as Entra finds it from an assertion's
// x5t#S256 or x5t.
type registeredCertificate struct {
	s256, s1 []byte
	key      *rsa.PublicKey
}

// thumbprintBytes decodes a thumbprint header as clients send it: base64url
// unpadded (the JWS spec, the plugin, MSAL Node), padded URL-safe (MSAL
// Python) or padded standard (MSAL Go). Entra accepts all of these.
func thumbprintBytes(v string) []byte {
	v = strings.TrimRight(strings.NewReplacer("+", "-", "/", "_").Replace(v), "=")
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		return nil
	}
	return b
}

// loadCertificates reads a client's certificate files (PEM).
func loadCertificates(paths []string) ([]registeredCertificate, error) {
	var out []registeredCertificate
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("certificate: %v", err)
		}
		block, _ := pem.Decode(data)
		if block == nil || block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("certificate %s: no PEM CERTIFICATE block", p)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %s: %v", p, err)
		}
		key, ok := cert.PublicKey.(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("certificate %s: not an RSA key", p)
		}
		s256, s1 := sha256.Sum256(cert.Raw), sha1.Sum(cert.Raw)
		out = append(out, registeredCertificate{s256[:], s1[:], key})
	}
	return out, nil
}

// assertionSkew is the clock skew allowed on an assertion's nbf and exp.
const assertionSkew = 5 * time.Minute

// checkClientAssertion checks a certificate client assertion as Entra ID
// does (Microsoft's certificate-credentials document; the codes are in
// testdata/fixtures/client-credentials.md): signed (PS256 or RS256) by a
// certificate registered on the client, found by x5t#S256 or x5t; iss and
// sub the client ID; aud the token endpoint it was sent to; within its
// time range, and with a jti. A jti may come again within the assertion's
// life: MSAL for Node and Python reuse one assertion for ten minutes, and
// Entra takes it (testdata/fixtures/client-credentials.md).
func (e *Emulator) checkClientAssertion(c *Client, assertion, tokenEndpoint string) *b2cError {
	bad := func(code, msg string) *b2cError { return &b2cError{"invalid_client", code, msg} }
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return bad("AADSTS50027", "JWT token is invalid or malformed.")
	}
	var header struct {
		Alg  string `json:"alg"`
		S256 string `json:"x5t#S256"`
		S1   string `json:"x5t"`
	}
	var claims struct {
		Iss, Sub, Jti string
		Aud           any
		Exp, Nbf      float64
	}
	h, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	p, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil || json.Unmarshal(h, &header) != nil || json.Unmarshal(p, &claims) != nil {
		return bad("AADSTS50027", "JWT token is invalid or malformed.")
	}
	var key *rsa.PublicKey
	s256, s1 := thumbprintBytes(header.S256), thumbprintBytes(header.S1)
	for _, rc := range c.certificates {
		if (header.S256 != "" && bytes.Equal(s256, rc.s256)) || (header.S256 == "" && header.S1 != "" && bytes.Equal(s1, rc.s1)) {
			key = rc.key
		}
	}
	if key == nil {
		return bad("AADSTS700027", fmt.Sprintf("Client assertion failed signature validation. The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '%s']", header.S256+header.S1))
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	var err error
	switch header.Alg {
	case "PS256":
		err = rsa.VerifyPSS(key, crypto.SHA256, digest[:], sig, nil)
	case "RS256":
		err = rsa.VerifyPKCS1v15(key, crypto.SHA256, digest[:], sig)
	default:
		err = fmt.Errorf("alg %q", header.Alg)
	}
	if err != nil {
		return bad("AADSTS700027", "Client assertion failed signature validation.")
	}
	if claims.Iss != c.ClientID || claims.Sub != c.ClientID {
		return bad("AADSTS700021", "Client assertion application identifier doesn't match 'client_id' parameter.")
	}
	if aud, _ := claims.Aud.(string); aud != tokenEndpoint {
		return bad("AADSTS700027", "Client assertion contains an invalid audience: it must be the token endpoint, "+tokenEndpoint+".")
	}
	now := e.state.now()
	exp, nbf := time.Unix(int64(claims.Exp), 0), time.Unix(int64(claims.Nbf), 0)
	if claims.Exp == 0 || now.After(exp.Add(assertionSkew)) || now.Add(assertionSkew).Before(nbf) {
		return bad("AADSTS700024", "Client assertion is not within its valid time range.")
	}
	if claims.Jti == "" {
		return bad("AADSTS50027", "JWT token is invalid or malformed: it has no jti.")
	}
	return nil
}

// authenticateClient checks how a confidential client proves itself at a
// token endpoint: its secret, or (Entra ID and External ID) a client
// assertion — signed with a registered certificate (its header names the
// certificate's thumbprint) or a token a federated credential trusts. B2C's
// user flows take only secrets.
func (e *Emulator) authenticateClient(r *http.Request, c *Client, secret, assertionKind, assertion, tokenEndpoint string) *b2cError {
	if assertionKind != "" || assertion != "" {
		if !e.entra() {
			return &b2cError{"invalid_request", "AADB2C99027", "Policy does not support client assertions; Azure AD B2C apps authenticate with a client secret."}
		}
		if assertionKind != assertionType {
			return &b2cError{"invalid_request", "AADSTS50027", "The client_assertion_type is not " + assertionType + "."}
		}
		if !namesCertificate(assertion) {
			return e.checkFederatedAssertion(r, c, assertion)
		}
		if len(c.certificates) == 0 {
			return &b2cError{"invalid_client", "AADSTS700027", "Client assertion failed signature validation: no certificate is registered on the application."}
		}
		return e.checkClientAssertion(c, assertion, tokenEndpoint)
	}
	if secret == "" {
		b := errRequest("AADB2C90079", "Clients must send a client_secret when redeeming a confidential grant.")
		return &b
	}
	if c.Secret == "" || !constantTimeEqual(secret, c.Secret) {
		return &b2cError{"invalid_client", "AADB2C90081", "The specified client_secret does not match the expected value for this client. Please correct the client_secret and try again."}
	}
	return nil
}

// namesCertificate tells whether an assertion's header names a certificate
// (x5t#S256 or x5t): the app's own assertion rather than a federated token.
func namesCertificate(assertion string) bool {
	head, _, _ := strings.Cut(assertion, ".")
	h, err := base64.RawURLEncoding.DecodeString(head)
	var header struct {
		S256 string `json:"x5t#S256"`
		S1   string `json:"x5t"`
	}
	return err == nil && json.Unmarshal(h, &header) == nil && (header.S256 != "" || header.S1 != "")
}
