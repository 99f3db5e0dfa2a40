package b2cauth

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/certmagic"
)

// sealVersion is the first byte of every sealed value: the format's version.
const sealVersion byte = 1

// codec seals and opens cookie values with AES-256-GCM. The first key
// seals; every key opens, so keys can be rotated without signing anyone out.
type codec struct {
	aeads []cipher.AEAD
}

func newCodec(keys [][]byte) (*codec, error) {
	c := &codec{}
	for _, k := range keys {
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		c.aeads = append(c.aeads, aead)
	}
	if len(c.aeads) == 0 {
		return nil, errors.New("no cookie key")
	}
	return c, nil
}

// seal encrypts and authenticates plain, bound to purpose (the additional
// data), and encodes it for a cookie: base64url(version | nonce | ciphertext).
func (c *codec) seal(plain []byte, purpose string) string {
	aead := c.aeads[0]
	buf := make([]byte, 1+aead.NonceSize(), 1+aead.NonceSize()+len(plain)+aead.Overhead())
	buf[0] = sealVersion
	if _, err := rand.Read(buf[1:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	buf = aead.Seal(buf, buf[1:1+aead.NonceSize()], plain, []byte(purpose))
	return base64.RawURLEncoding.EncodeToString(buf)
}

// open reverses seal. Anything tampered, truncated, sealed for another
// purpose or with an unknown key is refused.
func (c *codec) open(value, purpose string) ([]byte, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(raw) < 1 || raw[0] != sealVersion {
		return nil, false
	}
	for _, aead := range c.aeads {
		n := aead.NonceSize()
		if len(raw) < 1+n+aead.Overhead() {
			return nil, false
		}
		if plain, err := aead.Open(nil, raw[1:1+n], raw[1+n:], []byte(purpose)); err == nil {
			return plain, true
		}
	}
	return nil, false
}

// decodeCookieSecret reads a cookie_secret: base64 (standard or URL
// alphabet, padded or not) of exactly 32 bytes.
func decodeCookieSecret(s string) ([]byte, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			if len(k) != 32 {
				return nil, fmt.Errorf("is %d bytes, not 32", len(k))
			}
			return k, nil
		}
	}
	return nil, errors.New("is not base64")
}

// storedKeyName is where the generated cookie key lives in Caddy's storage.
const storedKeyName = "b2c_auth/cookie_key"

// storedCookieKey returns the key kept in Caddy's storage, making it the
// first time. Every Caddy that shares the storage shares the key.
func storedCookieKey(ctx context.Context, storage certmagic.Storage) ([]byte, error) {
	load := func() ([]byte, error) {
		data, err := storage.Load(ctx, storedKeyName)
		if err != nil {
			return nil, err
		}
		return decodeCookieSecret(string(data))
	}
	if k, err := load(); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	if err := storage.Lock(ctx, storedKeyName); err != nil {
		return nil, err
	}
	defer func() { _ = storage.Unlock(ctx, storedKeyName) }()
	if k, err := load(); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err // another instance made it meanwhile
	}
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	if err := storage.Store(ctx, storedKeyName, []byte(base64.StdEncoding.EncodeToString(k))); err != nil {
		return nil, err
	}
	return k, nil
}

// session is what the session cookie holds. There is no server-side state
// per session: only sign-outs are kept, in storage (see revocation.go).
type session struct {
	ID           string `json:"id"`           // random: what a sign-out revokes
	Issued       int64  `json:"is"`           // sign-in time, Unix ms: "everywhere" revokes sessions issued before it
	IDToken      string `json:"it"`           // its payload gives the claims
	AccessToken  string `json:"at,omitempty"` // when the provider gave one
	AccessExpiry int64  `json:"ae,omitempty"`
	RefreshToken string `json:"rt,omitempty"`
	Policy       string `json:"p,omitempty"` // the policy that issued the tokens
	// Claims that only the UserInfo endpoint gave (the ID token lacked them).
	UserInfo map[string]any `json:"u,omitempty"`
	Expires  int64          `json:"e"`
	Seen     int64          `json:"s"` // last activity, for inactivity_timeout
}

// Cookie chunking: browsers drop cookies over about 4 KB, so a long value
// is split over `<name>`, `<name>_1`, … and reassembled. When split, the
// first cookie's value starts with the count and a dot (base64url has no dot).
const (
	chunkSize = 3800
	maxChunks = 8
)

// readChunked reassembles a possibly chunked cookie value; "" if absent or
// malformed.
func readChunked(r *http.Request, name string) string {
	first, err := r.Cookie(name)
	if err != nil {
		return ""
	}
	countStr, rest, split := strings.Cut(first.Value, ".")
	if !split {
		return first.Value
	}
	n, err := strconv.Atoi(countStr)
	if err != nil || n < 2 || n > maxChunks {
		return ""
	}
	var sb strings.Builder
	sb.WriteString(rest)
	for i := 1; i < n; i++ {
		c, err := r.Cookie(name + "_" + strconv.Itoa(i))
		if err != nil {
			return ""
		}
		sb.WriteString(c.Value)
	}
	return sb.String()
}

// writeChunked sets a cookie value, split into chunks when long, and
// deletes chunks left over from a longer earlier value.
func writeChunked(w http.ResponseWriter, r *http.Request, base http.Cookie, value string) error {
	var parts []string
	for len(value) > chunkSize {
		parts = append(parts, value[:chunkSize])
		value = value[chunkSize:]
	}
	parts = append(parts, value)
	if len(parts) > maxChunks {
		return fmt.Errorf("session is too large for cookies (%d chunks)", len(parts))
	}
	if len(parts) > 1 {
		parts[0] = strconv.Itoa(len(parts)) + "." + parts[0]
	}
	for i, p := range parts {
		c := base
		c.Name = chunkName(base.Name, i)
		c.Value = p
		http.SetCookie(w, &c)
	}
	deleteChunks(w, r, base, len(parts))
	return nil
}

// deleteChunks expires the chunks from index `from` on that the request has.
func deleteChunks(w http.ResponseWriter, r *http.Request, base http.Cookie, from int) {
	for i := from; i < maxChunks; i++ {
		name := chunkName(base.Name, i)
		if _, err := r.Cookie(name); err != nil {
			continue
		}
		c := base
		c.Name, c.Value, c.MaxAge = name, "", -1
		http.SetCookie(w, &c)
	}
}

func chunkName(name string, i int) string {
	if i == 0 {
		return name
	}
	return name + "_" + strconv.Itoa(i)
}

// encodeSession and decodeSession turn a session into a cookie value.
func (h *Handler) encodeSession(s *session) string {
	data, _ := json.Marshal(s)
	return h.codec.seal(data, h.sessionPurpose)
}

func (h *Handler) decodeSession(value string) (*session, bool) {
	plain, ok := h.codec.open(value, h.sessionPurpose)
	if !ok {
		return nil, false
	}
	var s session
	if json.Unmarshal(plain, &s) != nil || s.IDToken == "" || s.ID == "" {
		return nil, false
	}
	return &s, true
}
