package b2cemulator

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// b2cError is an error as B2C reports it: an OAuth error code and a
// description that starts with an AADB2C code.
type b2cError struct {
	err  string // OAuth error: access_denied, invalid_grant, ...
	code string // AADB2C90118, ... (AADSTS… once localized)
	msg  string
}

// description is B2C's error_description: the code and message, then
// Correlation ID and Timestamp lines, every line ending in CRLF; or the
// identity platform's, with a Trace ID line and no final CRLF.
func (b b2cError) description() string {
	stamp := time.Now().UTC().Format("2006-01-02 15:04:05Z")
	if strings.HasPrefix(b.code, "AADSTS") {
		return b.code + ": " + b.msg + "\r\nTrace ID: " + newGUID() + "\r\nCorrelation ID: " + newGUID() + "\r\nTimestamp: " + stamp
	}
	return b.code + ": " + b.msg + "\r\nCorrelation ID: " + newGUID() + "\r\nTimestamp: " + stamp + "\r\n"
}

func errAccess(code, msg string) b2cError { return b2cError{"access_denied", code, msg} }
func errRequest(code, msg string) b2cError {
	return b2cError{"invalid_request", code, msg}
}
func errGrant(code, msg string) b2cError { return b2cError{"invalid_grant", code, msg} }

var (
	errForgotPassword = errAccess("AADB2C90118", "The user has forgotten their password.")
	errCancelled      = errAccess("AADB2C90091", "The user has cancelled entering self-asserted information.")
	// AADB2C90273 is both a cancel at a social provider (access_denied)
	// and a social provider's bad answer (server_error); see b2c-errors.md.
	errSocialCancelled = errAccess("AADB2C90273", "An invalid response was received : 'Error: access_denied, Error Description: The user has denied access to the scope requested by the client application.'")
	errSocialFailed    = b2cError{"server_error", "AADB2C90273", "An invalid response was received : 'Error: invalid_request,Error Description: response_mode is invalid.'"}
)

// param is one parameter of a redirect, kept in order.
type param struct{ name, value string }

// b2cEncode encodes parameters as B2C does in its redirects: `+` for
// spaces and lower-case percent escapes (`%3a`, `%0d%0a`).
func b2cEncode(params []param) string {
	var sb strings.Builder
	for i, p := range params {
		if i > 0 {
			sb.WriteByte('&')
		}
		sb.WriteString(url.QueryEscape(p.name))
		sb.WriteByte('=')
		v := url.QueryEscape(p.value)
		for j := 0; j < len(v); j++ {
			if v[j] == '%' && j+2 < len(v) {
				sb.WriteByte('%')
				sb.WriteString(strings.ToLower(v[j+1 : j+3]))
				j += 2
				continue
			}
			sb.WriteByte(v[j])
		}
	}
	return sb.String()
}

// withParams appends parameters to a redirect URI, after its own query
// (or, for the fragment response mode, in the fragment).
func withParams(redirectURI, mode string, params []param) string {
	sep := "?"
	if mode == "fragment" {
		sep = "#"
	} else if strings.Contains(redirectURI, "?") {
		sep = "&"
	}
	return redirectURI + sep + b2cEncode(params)
}

// object is a JSON object whose members keep their order, as B2C's tokens
// and responses do.
type object []member

type member struct {
	name  string
	value any
}

// MarshalJSON writes the members in order.
func (o object) MarshalJSON() ([]byte, error) {
	var sb strings.Builder
	sb.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			sb.WriteByte(',')
		}
		k, _ := json.Marshal(m.name)
		v, err := json.Marshal(m.value)
		if err != nil {
			return nil, err
		}
		sb.Write(k)
		sb.WriteByte(':')
		sb.Write(v)
	}
	sb.WriteByte('}')
	return []byte(sb.String()), nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return b
}

func newGUID() string {
	b := randomBytes(16)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return fmt.Sprintf("%s-%s-%s-%s-%s", h[0:8], h[8:12], h[12:16], h[16:20], h[20:32])
}

// codeHeader is the protected header of B2C's authorization codes, which
// are five-part JWE-shaped strings opaque to the relying party.
var codeHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"kid":"cpimcore_09252015","ver":"1.0","zip":"Deflate","ser":"1.0"}`))

// newCode makes a code in B2C's shape: header..iv.ciphertext.tag.
func newCode() string {
	enc := base64.RawURLEncoding.EncodeToString
	return codeHeader + ".." + enc(randomBytes(12)) + "." + enc(randomBytes(96)) + "." + enc(randomBytes(16))
}

// newRefreshToken makes an opaque refresh token.
func newRefreshToken() string {
	return "eyJraWQiOiJjcGltY29yZV8wOTI1MjAxNSIsInZlciI6IjEuMCJ9." + base64.RawURLEncoding.EncodeToString(randomBytes(64))
}

// Name and Value expose a parameter to the form_post template.
func (p param) Name() string  { return p.name }
func (p param) Value() string { return p.value }
