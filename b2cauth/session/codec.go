package session

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/caddyserver/certmagic"
)

// sealVersion is the first byte of every sealed value: the format's version.
const sealVersion byte = 1

// Codec seals and opens cookie values with AES-256-GCM. The first key
// seals; every key opens, so keys can be rotated without signing anyone out.
type Codec struct {
	aeads []cipher.AEAD
}

func NewCodec(keys [][]byte) (*Codec, error) {
	c := &Codec{}
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

// Seal encrypts and authenticates plain, bound to purpose (the additional
// data), and encodes it for a cookie: base64url(version | nonce | ciphertext).
func (c *Codec) Seal(plain []byte, purpose string) string {
	aead := c.aeads[0]
	buf := make([]byte, 1+aead.NonceSize(), 1+aead.NonceSize()+len(plain)+aead.Overhead())
	buf[0] = sealVersion
	if _, err := rand.Read(buf[1:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	buf = aead.Seal(buf, buf[1:1+aead.NonceSize()], plain, []byte(purpose))
	return base64.RawURLEncoding.EncodeToString(buf)
}

// Open reverses Seal. Anything tampered, truncated, sealed for another
// purpose or with an unknown key is refused.
func (c *Codec) Open(value, purpose string) ([]byte, bool) {
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

// DecodeSecret reads a cookie_secret: base64 (standard or URL
// alphabet, padded or not) of exactly 32 bytes.
func DecodeSecret(s string) ([]byte, error) {
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

// StoredKeyName is where the generated cookie key lives in Caddy's storage.
const StoredKeyName = "b2c_auth/cookie_key"

// StoredKey returns the key kept in Caddy's storage, making it the
// first time. Every Caddy that shares the storage shares the key.
func StoredKey(ctx context.Context, storage certmagic.Storage) ([]byte, error) {
	load := func() ([]byte, error) {
		data, err := storage.Load(ctx, StoredKeyName)
		if err != nil {
			return nil, err
		}
		return DecodeSecret(string(data))
	}
	if k, err := load(); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	if err := storage.Lock(ctx, StoredKeyName); err != nil {
		return nil, err
	}
	defer func() { _ = storage.Unlock(ctx, StoredKeyName) }()
	if k, err := load(); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err // another instance made it meanwhile
	}
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	if err := storage.Store(ctx, StoredKeyName, []byte(base64.StdEncoding.EncodeToString(k))); err != nil {
		return nil, err
	}
	return k, nil
}
