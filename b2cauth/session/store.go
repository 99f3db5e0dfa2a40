package session

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"sync"

	"github.com/caddyserver/certmagic"
)

// Dir is where the records live in Caddy's storage.
const Dir = "b2c_auth/sessions"

// SecretSize is the length of a session's secret, in bytes.
const SecretSize = 32

// ErrUnreadable is a record that exists but does not open with the
// secret: tampered with, or written by something else.
var ErrUnreadable = errors.New("session record does not open")

// Store reads and writes session records, so that a session's cookie
// carries only the secret that finds and opens its record.
//
// Each record is sealed (AES-256-GCM) with a key derived from that secret,
// and named by another value derived from it: storage holds neither, so
// whoever reads the storage (which also holds the generated cookie key)
// still cannot read a session's tokens without its cookie. Records live
// under the hour their session ends, b2c_auth/sessions/<hour>/<name>, so
// that ended ones are swept by listing only the hours gone by: the cost of
// a sweep follows the sessions that ended, not the live ones.
type Store struct {
	Storage certmagic.Storage

	mu        sync.Mutex
	sweptHour int64
}

// NewSecret is a fresh random secret for a new session.
func NewSecret() []byte {
	s := make([]byte, SecretSize)
	_, _ = rand.Read(s) // crypto/rand does not fail on supported platforms
	return s
}

// keyOf is where a session's record lives and the AEAD that seals it.
func keyOf(secret []byte, expires int64) (string, cipher.AEAD, error) {
	if len(secret) != SecretSize {
		return "", nil, fmt.Errorf("session secret of %d bytes", len(secret))
	}
	name, err := hkdf.Key(sha256.New, secret, nil, "caddy-b2c session record name", 16)
	if err != nil {
		return "", nil, err
	}
	k, err := hkdf.Key(sha256.New, secret, nil, "caddy-b2c session record key", 32)
	if err != nil {
		return "", nil, err
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return "", nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return "", nil, err
	}
	return path.Join(Dir, strconv.FormatInt(hourOf(expires), 10), hex.EncodeToString(name)), aead, nil
}

// hourOf is the hour (Unix seconds / 3600) a session ending at expires
// (Unix seconds) is filed under.
func hourOf(expires int64) int64 { return expires / 3600 }

// Put writes (or replaces) the record of the session with this secret,
// ending at expires (Unix seconds).
func (st *Store) Put(ctx context.Context, secret []byte, expires int64, plain []byte) error {
	key, aead, err := keyOf(secret, expires)
	if err != nil {
		return err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	_, _ = rand.Read(nonce)
	return st.Storage.Store(ctx, key, aead.Seal(nonce, nonce, plain, []byte(key)))
}

// Get reads the record of the session with this secret: fs.ErrNotExist
// when there is none (it ended, was signed out or swept), ErrUnreadable
// when it does not open, another error when storage cannot be read.
func (st *Store) Get(ctx context.Context, secret []byte, expires int64) ([]byte, error) {
	key, aead, err := keyOf(secret, expires)
	if err != nil {
		return nil, ErrUnreadable
	}
	sealed, err := st.Storage.Load(ctx, key)
	if err != nil {
		return nil, err
	}
	n := aead.NonceSize()
	if len(sealed) < n+aead.Overhead() {
		return nil, ErrUnreadable
	}
	plain, err := aead.Open(nil, sealed[:n], sealed[n:], []byte(key))
	if err != nil {
		return nil, ErrUnreadable
	}
	return plain, nil
}

// Delete removes the record of the session with this secret; a record
// already gone is no error.
func (st *Store) Delete(ctx context.Context, secret []byte, expires int64) error {
	key, _, err := keyOf(secret, expires)
	if err != nil {
		return err
	}
	if err := st.Storage.Delete(ctx, key); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Sweep deletes, at most once an hour per Store, the records of sessions
// that have ended: it lists the hours (a few per session lifetime), then
// only those gone by. It returns how many records it deleted.
func (st *Store) Sweep(ctx context.Context, now int64) (int, error) {
	hour := now / 3600
	st.mu.Lock()
	due := st.sweptHour != hour
	st.sweptHour = hour
	st.mu.Unlock()
	if !due {
		return 0, nil
	}
	hours, err := st.Storage.List(ctx, Dir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	deleted := 0
	for _, dir := range hours {
		// A session filed under hour h ends before (h+1)*3600 <= now.
		if h, err := strconv.ParseInt(path.Base(dir), 10, 64); err != nil || h >= hour {
			continue
		}
		records, err := st.Storage.List(ctx, dir, false)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return deleted, err
		}
		for _, rec := range records {
			if err := st.Storage.Delete(ctx, rec); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return deleted, err
			}
			deleted++
		}
		if err := st.Storage.Delete(ctx, dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return deleted, err
		}
	}
	n, err := st.sweepUsers(ctx, now)
	return deleted + n, err
}

// sweepUsers deletes the user indexes whose sessions have all ended: the
// buckets gone by.
func (st *Store) sweepUsers(ctx context.Context, now int64) (int, error) {
	widths, err := st.Storage.List(ctx, usersDir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	deleted := 0
	for _, wdir := range widths {
		width, err := strconv.ParseInt(path.Base(wdir), 10, 64)
		if err != nil || width <= 0 {
			continue
		}
		buckets, err := st.Storage.List(ctx, wdir, false)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return deleted, err
		}
		for _, bdir := range buckets {
			if b, err := strconv.ParseInt(path.Base(bdir), 10, 64); err != nil || (b+1)*width > now {
				continue
			}
			if err := st.Storage.Delete(ctx, bdir); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return deleted, err
			}
			deleted++
		}
	}
	return deleted, nil
}
