package b2cauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// Sign-outs are kept in Caddy's storage, one small entry each under
// revocationDir, so that every Caddy sharing the storage refuses the
// sessions they cover. Each instance keeps them in memory and reads new
// ones every revocation_sync: a signed-in request costs map lookups, never
// a storage read. An entry is forgotten (and deleted) once every session it
// covers has expired.
const (
	revocationDir = "b2c_auth/revocations"
	// signInDir records the provider session IDs (`sid`) of sign-ins, so
	// that front-channel logout revokes only sessions that exist.
	signInDir = "b2c_auth/sids"

	DefaultRevocationSync = 10 * time.Second
)

// Kinds of revocation.
const (
	revokeSession = "session" // one session, by its ID
	revokeUser    = "user"    // every session of a user issued before a time
	revokeSID     = "sid"     // every session of a provider session (front-channel logout)
)

// revocation is one entry in storage.
type revocation struct {
	Kind    string `json:"kind"`
	Value   string `json:"value"`            // session ID, user ID or provider sid
	Before  int64  `json:"before,omitempty"` // user: sessions issued before this (Unix ms)
	Expires int64  `json:"expires"`          // Unix seconds: no covered session outlives it
}

// key is where the entry is stored. A user's entry carries its time, so a
// newer "everywhere" is a new key and entries never change once written.
func (rv revocation) key() string {
	sum := sha256.Sum256([]byte(rv.Kind + "\x00" + rv.Value))
	name := rv.Kind + "_" + hex.EncodeToString(sum[:16])
	if rv.Kind == revokeUser {
		name += "_" + strconv.FormatInt(rv.Before, 10)
	}
	return path.Join(revocationDir, name)
}

// revokedSet is an immutable snapshot of what is revoked, swapped whole.
type revokedSet struct {
	sessions map[string]struct{}
	sids     map[string]struct{}
	users    map[string]int64 // user ID → sessions issued before this (Unix ms) are revoked
}

// revoked tells whether a session is revoked: by its ID, its user's
// "everywhere" or its provider session.
func (rs *revokedSet) revoked(sessionID, userID, sid string, issuedMs int64) bool {
	if _, ok := rs.sessions[sessionID]; ok {
		return true
	}
	if before, ok := rs.users[userID]; ok && issuedMs < before {
		return true
	}
	if sid != "" {
		if _, ok := rs.sids[sid]; ok {
			return true
		}
	}
	return false
}

// revocations is the revocation list of one storage, shared by every
// b2c_auth handler of the process that uses that storage (through a
// caddy.UsagePool, so it lives across config reloads) and kept in step
// with the storage by a background sync.
type revocations struct {
	interval time.Duration
	current  atomic.Pointer[revokedSet]

	mu      sync.Mutex // guards what follows
	storage certmagic.Storage
	logger  *zap.Logger
	known   map[string]revocation // by storage key
	failing bool                  // the last sync failed (logged once)

	stop chan struct{}
	done chan struct{}
}

// revocationPool shares a revocation list per storage and sync interval.
var revocationPool = caddy.NewUsagePool()

// revocationPoolKey identifies a storage across config reloads: Caddy's
// storage modules describe their configuration with String (secrets
// redacted); without one, the storage value itself, within one config.
func revocationPoolKey(storage certmagic.Storage, interval time.Duration) string {
	id := fmt.Sprintf("%T@%p", storage, storage)
	if s, ok := storage.(fmt.Stringer); ok {
		id = fmt.Sprintf("%T:%s", storage, s.String())
	}
	return id + "|" + interval.String()
}

// loadRevocations returns the shared revocation list for the storage,
// starting it (and its sync) for the first user. The caller releases it
// with revocationPool.Delete(key).
func loadRevocations(storage certmagic.Storage, interval time.Duration, logger *zap.Logger) (*revocations, string, error) {
	key := revocationPoolKey(storage, interval)
	v, _, err := revocationPool.LoadOrNew(key, func() (caddy.Destructor, error) {
		rv := &revocations{interval: interval, known: map[string]revocation{}, stop: make(chan struct{}), done: make(chan struct{})}
		rv.current.Store(&revokedSet{})
		rv.use(storage, logger)
		go rv.run()
		return rv, nil
	})
	if err != nil {
		return nil, "", err
	}
	rv := v.(*revocations)
	rv.use(storage, logger) // the newest config's storage and logger
	return rv, key, nil
}

// use makes the list read and write through this storage from now on: a
// reload's storage replaces the old config's, which may be closed.
func (rv *revocations) use(storage certmagic.Storage, logger *zap.Logger) {
	rv.mu.Lock()
	rv.storage, rv.logger = storage, logger
	rv.mu.Unlock()
}

// Destruct stops the sync when the last handler using the list is gone.
func (rv *revocations) Destruct() error {
	close(rv.stop)
	<-rv.done
	return nil
}

// run syncs at once and then every interval until stopped.
func (rv *revocations) run() {
	defer close(rv.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-rv.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	tick := time.NewTicker(rv.interval)
	defer tick.Stop()
	for {
		rv.sync(ctx)
		select {
		case <-tick.C:
		case <-rv.stop:
			return
		}
	}
}

// sync reads the entries that other instances (or earlier runs) wrote,
// forgets and deletes expired ones, and publishes a new snapshot.
func (rv *revocations) sync(ctx context.Context) {
	rv.mu.Lock()
	storage, logger := rv.storage, rv.logger
	rv.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	keys, err := storage.List(ctx, revocationDir, false)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		rv.syncFailed(logger, err)
		return
	}
	now := time.Now().Unix()
	fresh := map[string]revocation{}
	var expired []string
	for _, k := range keys {
		rv.mu.Lock()
		_, have := rv.known[k]
		rv.mu.Unlock()
		if have {
			continue
		}
		data, err := storage.Load(ctx, k)
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted meanwhile
		}
		if err != nil {
			rv.syncFailed(logger, err)
			return
		}
		var e revocation
		if json.Unmarshal(data, &e) != nil || e.key() != k {
			continue // not ours, or damaged: ignore, never trust
		}
		if e.Expires <= now {
			expired = append(expired, k)
			continue
		}
		fresh[k] = e
	}

	rv.mu.Lock()
	if rv.failing {
		logger.Info("revocation sync recovered")
		rv.failing = false
	}
	for k, e := range fresh {
		rv.known[k] = e
	}
	for k, e := range rv.known {
		if e.Expires <= now {
			delete(rv.known, k)
			expired = append(expired, k)
		}
	}
	rv.publishLocked()
	rv.mu.Unlock()

	for _, k := range expired { // any instance may clean up; deleting twice is harmless
		if err := storage.Delete(ctx, k); err != nil && !errors.Is(err, fs.ErrNotExist) {
			logger.Debug("could not delete an expired revocation", zap.Error(err))
		}
	}
	pruneSignIns(ctx, storage, now)
}

func (rv *revocations) syncFailed(logger *zap.Logger, err error) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	if !rv.failing {
		logger.Error("revocation sync failed; sign-outs from other instances are not seen until it recovers", zap.Error(err))
		rv.failing = true
	}
}

// publishLocked rebuilds the snapshot from the known entries.
func (rv *revocations) publishLocked() {
	set := &revokedSet{sessions: map[string]struct{}{}, sids: map[string]struct{}{}, users: map[string]int64{}}
	for _, e := range rv.known {
		switch e.Kind {
		case revokeSession:
			set.sessions[e.Value] = struct{}{}
		case revokeSID:
			set.sids[e.Value] = struct{}{}
		case revokeUser:
			set.users[e.Value] = max(set.users[e.Value], e.Before)
		}
	}
	rv.current.Store(set)
}

// revoked tells whether a session is revoked, from memory only.
func (rv *revocations) revoked(sessionID, userID, sid string, issuedMs int64) bool {
	return rv.current.Load().revoked(sessionID, userID, sid, issuedMs)
}

// add records revocations: at once in this process, then in storage for
// the others. A storage error is returned after the local record is made.
func (rv *revocations) add(ctx context.Context, entries ...revocation) error {
	rv.mu.Lock()
	storage := rv.storage
	var superseded []string
	for _, e := range entries {
		if e.Kind == revokeUser { // an earlier "everywhere" of the user is covered by this one
			for k, old := range rv.known {
				if old.Kind == revokeUser && old.Value == e.Value && old.Before < e.Before {
					superseded = append(superseded, k)
				}
			}
		}
		rv.known[e.key()] = e
	}
	rv.publishLocked()
	rv.mu.Unlock()

	for _, e := range entries {
		data, _ := json.Marshal(e)
		if err := storage.Store(ctx, e.key(), data); err != nil {
			return fmt.Errorf("recording the sign-out in storage: %w", err)
		}
	}
	for _, k := range superseded {
		_ = storage.Delete(ctx, k) // harmless if it stays: it expires
		rv.mu.Lock()
		delete(rv.known, k)
		rv.mu.Unlock()
	}
	return nil
}

// Sign-in records: the provider session IDs (`sid`) that have a session
// here, so that front-channel logout revokes only sessions that exist, and
// a flood of made-up sids writes nothing. A record is an empty entry whose
// name holds the sid's hash and when its session ends; the sync deletes
// it then.

func signInPrefix(sid string) string {
	sum := sha256.Sum256([]byte(sid))
	return hex.EncodeToString(sum[:16]) + "_"
}

// recordSignIn notes a provider sid at sign-in.
func (rv *revocations) recordSignIn(ctx context.Context, sid string, expires time.Time) error {
	rv.mu.Lock()
	storage := rv.storage
	rv.mu.Unlock()
	return storage.Store(ctx, path.Join(signInDir, signInPrefix(sid)+strconv.FormatInt(expires.Unix(), 10)), []byte("{}"))
}

// knownSignIn tells whether a provider sid has a live session here.
func (rv *revocations) knownSignIn(ctx context.Context, sid string) (bool, error) {
	rv.mu.Lock()
	storage := rv.storage
	rv.mu.Unlock()
	keys, err := storage.List(ctx, signInDir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	prefix, now := signInPrefix(sid), time.Now().Unix()
	for _, k := range keys {
		if rest, ok := strings.CutPrefix(path.Base(k), prefix); ok {
			if exp, err := strconv.ParseInt(rest, 10, 64); err == nil && exp > now {
				return true, nil
			}
		}
	}
	return false, nil
}

// pruneSignIns deletes the sign-in records whose sessions have ended.
func pruneSignIns(ctx context.Context, storage certmagic.Storage, now int64) {
	keys, err := storage.List(ctx, signInDir, false)
	if err != nil {
		return
	}
	for _, k := range keys {
		_, exp, _ := strings.Cut(path.Base(k), "_")
		if t, err := strconv.ParseInt(exp, 10, 64); err != nil || t <= now {
			_ = storage.Delete(ctx, k)
		}
	}
}

// validSID is the shape a provider session ID may have: printable ASCII
// without spaces, at most 256 characters.
func validSID(sid string) bool {
	if sid == "" || len(sid) > 256 {
		return false
	}
	return !strings.ContainsFunc(sid, func(c rune) bool { return c <= ' ' || c > '~' })
}
