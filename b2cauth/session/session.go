// Package session is what a signed-in user's session is and where it
// lives: its format (JSON, compressed, sealed with AES-256-GCM under a key
// ring), the cookies that carry it (split into chunks when long), and,
// with session_store storage, its record in Caddy's storage (named and
// sealed with keys derived from a secret only the cookie holds, filed by
// the hour it ends, swept by the hours gone by, bounded per user).
package session

import (
	"bytes"
	"compress/flate"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"strings"
)

// Session is a signed-in user's session: what the session cookie holds
// (session_store cookie), or what its record in Caddy's storage holds
// (session_store storage, see Store). session_tokens says which
// tokens it keeps.
type Session struct {
	ID      string `json:"id"` // random: what a sign-out revokes
	Issued  int64  `json:"is"` // sign-in time, Unix ms: "everywhere" revokes sessions issued before it
	IDToken string `json:"it,omitempty"`
	// The ID token's payload, kept instead of the token when session_tokens
	// leaves `id` out: the claims, without the header and signature.
	Claims       json.RawMessage `json:"c,omitempty"`
	AccessToken  string          `json:"at,omitempty"` // when the provider gave one
	AccessExpiry int64           `json:"ae,omitempty"`
	RefreshToken string          `json:"rt,omitempty"`
	Policy       string          `json:"p,omitempty"` // the policy that issued the tokens
	// Claims that only the UserInfo endpoint gave (the ID token lacked them).
	UserInfo map[string]any `json:"u,omitempty"`
	Expires  int64          `json:"e"`
	Seen     int64          `json:"s"` // last activity, for inactivity_timeout
	// Microsoft Graph could not give the groups (rules that need them
	// refuse); the groups it gave are in UserInfo.
	GroupsUnknown bool `json:"gu,omitempty"`

	// Ref is set when the session lives in storage: its cookie's contents.
	Ref *Ref `json:"-"`
	// IssuedIDToken is the ID token the provider just gave, kept or not
	// (for a sign-out hint); not sealed anywhere.
	IssuedIDToken string `json:"-"`
}

// Payload is the ID token's payload: the claims.
func (s *Session) Payload() ([]byte, error) {
	if len(s.Claims) > 0 {
		return s.Claims, nil
	}
	return JWTPayload(s.IDToken)
}

// A session is sealed as JSON compressed with DEFLATE, after a marker
// byte: the tokens' base64 JSON compresses well, and a smaller cookie
// needs fewer chunks (and bytes on every request). A session kept in
// storage has a cookie of its own kind: the Stored marker, then its
// Ref as JSON.
const (
	deflated = 0x01
	Stored   = 0x02
	maxJSON  = 64 << 10 // what a session may inflate to
)

// Ref is what the cookie of a session kept in storage holds: the
// secret that names and opens its record, when it ends (where the record
// is filed), its last activity, and how many times it was renewed (so the
// cookie changes with the tokens, and caches keyed by it load them anew).
type Ref struct {
	Secret  []byte `json:"k"`
	Expires int64  `json:"e"`
	Seen    int64  `json:"s"`
	Gen     int    `json:"g,omitempty"`
}

// Deflate compresses a session's JSON, after the deflated marker.
func Deflate(s *Session) []byte {
	data, _ := json.Marshal(s)
	var buf bytes.Buffer
	buf.WriteByte(deflated)
	zw, _ := flate.NewWriter(&buf, flate.BestCompression)
	_, _ = zw.Write(data)
	_ = zw.Close()
	return buf.Bytes()
}

// Inflate reverses Deflate; nil for anything that is not a session.
func Inflate(plain []byte) *Session {
	if len(plain) == 0 || plain[0] != deflated {
		return nil
	}
	data, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(plain[1:])), maxJSON+1))
	if err != nil || len(data) > maxJSON {
		return nil
	}
	var s Session
	if json.Unmarshal(data, &s) != nil || (s.IDToken == "" && len(s.Claims) == 0) || s.ID == "" {
		return nil
	}
	return &s
}

// JWTPayload decodes a JWT's payload without checking it: only for tokens
// this handler checked before sealing them into the session.
func JWTPayload(token string) ([]byte, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a JWT")
	}
	return base64.RawURLEncoding.DecodeString(parts[1])
}
