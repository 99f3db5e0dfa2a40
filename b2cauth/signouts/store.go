// Package signouts keeps sign-outs in Caddy's storage, so that every Caddy
// sharing the storage refuses the sessions they cover, at a cost that does
// not grow with the number of sessions.
package signouts

import (
	"container/heap"
	"context"
	"crypto/rand"
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
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// Sign-outs are kept in Caddy's storage, one small immutable entry each, so
// that every Caddy sharing the storage refuses the sessions they cover.
// Each instance keeps them in memory and reads new ones every
// revocation_sync: a signed-in request costs map lookups, never a storage
// read.
//
// Every operation costs a bounded number of storage operations, whatever
// the number of sessions:
//
//   - a sign-out writes one entry (two for "everywhere") under
//     signOutDir/<minute written>/, so that a sync lists only the few
//     minutes since its last pass (and a margin for clocks and slow
//     writes), and loads only entries it has not seen;
//   - a sign-in with a provider `sid` writes a record under its own key
//     (signInDir/<hash of sid>), so front-channel logout reads one key;
//     an index by the hour the record expires (signInExpiryDir) lets the
//     records be pruned without listing them all;
//   - a writer then rewrites its minute's mark (signOutMarkDir/<minute>)
//     with a new random value, and a sync lists a minute again only when
//     its mark (or, on file systems, its directory's modification time)
//     changed — elsewhere also every fullListEvery passes, for writers of
//     versions before the marks: a pass at rest costs a load and a stat
//     per minute of the window, not a listing of what did not change;
//   - an entry is forgotten, and deleted, once every session it covers has
//     expired, taken from a heap ordered by expiry.
const (
	signOutDir      = "b2c_auth/signouts"
	signOutMarkDir  = "b2c_auth/signout_marks"
	signInDir       = "b2c_auth/signins"
	signInExpiryDir = "b2c_auth/signin_expiry"

	// DefaultSync is how often a Store reads what other instances wrote.
	DefaultSync = 10 * time.Second

	// signOutBucket is the span of one directory of sign-outs.
	signOutBucket = time.Minute
	// syncOverlap is how far back each sync lists again: sign-outs written
	// by an instance whose clock is behind, or whose write was slow, are
	// still found. Clocks of a cluster must agree within it. A pass costs
	// a listing of the sign-outs written in this window, and a load of
	// those it has not seen.
	syncOverlap = 2 * time.Minute
	// fullListEvery is how many passes go by between listings of every
	// minute of the window, marks or not.
	fullListEvery = 6
)

// Kinds of Entry.
const (
	KindSession = "session" // one session, by its ID
	KindUser    = "user"    // every session (and bearer token) of a user issued before a time
	KindSID     = "sid"     // every session of a provider session (front-channel logout)
)

// Entry is one sign-out, as stored.
type Entry struct {
	Kind    string `json:"kind"`
	Value   string `json:"value"`            // session ID, user ID or provider sid
	Before  int64  `json:"before,omitempty"` // user: sessions issued before this (Unix ms)
	Expires int64  `json:"expires"`          // Unix seconds: no covered session outlives it
}

// UserSignOut is the entry that signs a user out everywhere at now: every
// session (and bearer token) of theirs issued until now, for as long as
// such a session can live.
func UserSignOut(user string, now time.Time, lifetime time.Duration) Entry {
	return Entry{Kind: KindUser, Value: user, Before: now.UnixMilli() + 1, Expires: now.Add(lifetime).Unix()}
}

// name is the entry's file name: a user's carries its time, so a newer
// "everywhere" is a new name and entries never change once written.
func (e Entry) name() string {
	sum := sha256.Sum256([]byte(e.Kind + "\x00" + e.Value))
	name := e.Kind + "_" + hex.EncodeToString(sum[:16])
	if e.Kind == KindUser {
		name += "_" + strconv.FormatInt(e.Before, 10)
	}
	return name
}

// keyAt is where the entry is stored when written at t.
func (e Entry) keyAt(t time.Time) string {
	return path.Join(signOutDir, strconv.FormatInt(t.Unix()/int64(signOutBucket/time.Second), 10), e.name())
}

// Store is the sign-out list of one storage, shared by every
// b2c_auth handler of the process that uses that storage (through a
// caddy.UsagePool, so it lives across config reloads) and kept in step
// with the storage by a background sync.
type Store struct {
	interval time.Duration
	// now is the clock every decision on time takes: the wall clock. The
	// list is shared by handlers, and its sync runs in the background, so
	// it does not take a handler's clock.
	now func() time.Time
	set revokedSet

	mu         sync.Mutex // guards what follows
	storage    certmagic.Storage
	logger     *zap.Logger
	expiring   expiryHeap                    // every live entry, soonest expiry first
	recent     map[int64]map[string]struct{} // keys seen, by bucket, in the buckets a sync lists again
	marks      map[int64]string              // each bucket's mark when it was last listed
	passes     int                           // syncs so far
	bucketLive map[int64]int                 // live entries per bucket, to delete a bucket once empty
	lastPass   time.Time                     // when the last complete sync started; zero before the first
	prunedHour int64                         // the last hour whose sign-in records were pruned
	failing    bool                          // the last sync failed (logged once)
	stop, done chan struct{}
}

// Release gives back a Store that Open returned; the last user stops its
// sync.
func Release(key string) error {
	_, err := revocationPool.Delete(key)
	return err
}

// Len is how many sign-outs are live in memory.
func (st *Store) Len() int { return int(st.set.size.Load()) }

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

// New makes an empty Store that reads and writes through storage, with
// no sync of its own: its owner calls Sync.
func New(storage certmagic.Storage, interval time.Duration, logger *zap.Logger) *Store {
	return &Store{
		interval: interval, storage: storage, logger: logger, now: time.Now,
		recent: map[int64]map[string]struct{}{}, marks: map[int64]string{}, bucketLive: map[int64]int{},
		stop: make(chan struct{}), done: make(chan struct{}),
	}
}

// Open returns the shared Store of a storage, starting it (and its sync
// every interval) for the first user. The caller gives it back with
// Release(key).
func Open(storage certmagic.Storage, interval time.Duration, logger *zap.Logger) (*Store, string, error) {
	key := revocationPoolKey(storage, interval)
	v, _, err := revocationPool.LoadOrNew(key, func() (caddy.Destructor, error) {
		st := New(storage, interval, logger)
		go st.run()
		return st, nil
	})
	if err != nil {
		return nil, "", err
	}
	st := v.(*Store)
	st.use(storage, logger) // the newest config's storage and logger
	return st, key, nil
}

// use makes the list read and write through this storage from now on: a
// reload's storage replaces the old config's, which may be closed.
func (st *Store) use(storage certmagic.Storage, logger *zap.Logger) {
	st.mu.Lock()
	st.storage, st.logger = storage, logger
	st.mu.Unlock()
}

// Destruct stops the sync when the last handler using the list is gone.
func (st *Store) Destruct() error {
	close(st.stop)
	<-st.done
	return nil
}

// run syncs at once and then every interval until stopped.
func (st *Store) run() {
	defer close(st.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-st.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	tick := time.NewTicker(st.interval)
	defer tick.Stop()
	for {
		st.Sync(ctx)
		select {
		case <-tick.C:
		case <-st.stop:
			return
		}
	}
}

// store is the storage (and logger) of the newest config.
func (st *Store) store() (certmagic.Storage, *zap.Logger) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.storage, st.logger
}

// Sync reads the sign-outs written since the last pass (all of them on the
// first), forgets and deletes expired ones, and prunes ended sign-ins.
func (st *Store) Sync(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := st.now()
	st.mu.Lock()
	last := st.lastPass
	full := st.passes%fullListEvery == 0
	st.passes++
	st.mu.Unlock()

	var buckets []int64
	if last.IsZero() {
		// The first pass reads every bucket there is: what is live.
		storage, _ := st.store()
		names, err := storage.List(ctx, signOutDir, false)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			st.syncFailed(err)
			return
		}
		for _, n := range names {
			if b, err := strconv.ParseInt(path.Base(n), 10, 64); err == nil {
				buckets = append(buckets, b)
			}
		}
	} else {
		step := int64(signOutBucket / time.Second)
		for b := last.Add(-syncOverlap).Unix() / step; b <= start.Unix()/step; b++ {
			buckets = append(buckets, b)
		}
	}
	for _, b := range buckets {
		if err := st.readBucket(ctx, b, full); err != nil {
			st.syncFailed(err)
			return
		}
	}

	st.mu.Lock()
	if st.failing {
		st.logger.Info("revocation sync recovered")
		st.failing = false
	}
	st.lastPass = start
	horizon := start.Add(-syncOverlap).Unix() / int64(signOutBucket/time.Second)
	for b := range st.recent { // a bucket at a time: no work per key
		if b < horizon-1 {
			delete(st.recent, b)
		}
	}
	var oldMarks []int64
	for b, m := range st.marks {
		if b < horizon-1 {
			delete(st.marks, b)
			if !strings.HasPrefix(m, "|") && m != "" {
				oldMarks = append(oldMarks, b)
			}
		}
	}
	st.mu.Unlock()
	for _, b := range oldMarks {
		st.deleteKey(ctx, markKey(b)) // no writer writes there any more
	}

	st.expire(ctx, start.Unix())
	st.pruneSignIns(ctx, start.Unix())
}

// markKey is where a bucket's mark is: rewritten by every writer to it.
func markKey(bucket int64) string {
	return path.Join(signOutMarkDir, strconv.FormatInt(bucket, 10))
}

// readBucket loads the entries of one bucket that this list has not seen:
// unless the bucket is as it was when last listed — its mark the same, and
// its directory's modification time too where the storage tells it (file
// systems: then even a writer of an earlier version, which writes no
// mark, is seen at once); elsewhere a full pass lists it anyway.
func (st *Store) readBucket(ctx context.Context, bucket int64, full bool) error {
	storage, _ := st.store()
	dir := path.Join(signOutDir, strconv.FormatInt(bucket, 10))
	mark, err := storage.Load(ctx, markKey(bucket)) // before the listing: a write after it changes it
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	version, dirTimes := string(mark), false
	if info, err := storage.Stat(ctx, dir); err == nil && !info.IsTerminal && !info.Modified.IsZero() {
		version, dirTimes = version+"|"+info.Modified.UTC().Format(time.RFC3339Nano), true
	}
	st.mu.Lock()
	last, listed := st.marks[bucket]
	st.mu.Unlock()
	if listed && last == version && (dirTimes || !full) {
		return nil // nothing written there since
	}
	keys, err := storage.List(ctx, dir, false)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := st.readNew(ctx, keys, bucket, func(e Entry) string {
		return e.keyAt(time.Unix(bucket*int64(signOutBucket/time.Second), 0))
	}); err != nil {
		return err
	}
	st.mu.Lock()
	st.marks[bucket] = version
	st.mu.Unlock()
	return nil
}

// readNew loads the keys of a bucket it has not seen, marks them seen, and
// records the live entries stored where they belong (keyOf); expired ones
// are deleted, anything else ignored, never trusted.
func (st *Store) readNew(ctx context.Context, keys []string, bucket int64, keyOf func(Entry) string) error {
	now := st.now().Unix()
	for _, k := range keys {
		if st.seen(bucket, k) {
			continue
		}
		e, err := st.load(ctx, k)
		if err != nil {
			return err
		}
		st.markSeen(bucket, k)
		if e == nil || keyOf(*e) != k {
			continue // deleted meanwhile, not ours, or damaged
		}
		if e.Expires <= now {
			st.deleteKey(ctx, k)
			continue
		}
		st.record(*e, bucket)
	}
	return nil
}

// seen tells whether a key of a bucket was read (or written) here.
func (st *Store) seen(bucket int64, key string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	_, ok := st.recent[bucket][key]
	return ok
}

// markSeen notes a key of a bucket as read (or written) here; it tells
// whether it was already.
func (st *Store) markSeen(bucket int64, key string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	keys := st.recent[bucket]
	if keys == nil {
		keys = map[string]struct{}{}
		st.recent[bucket] = keys
	}
	_, ok := keys[key]
	keys[key] = struct{}{}
	return ok
}

// load reads an entry; nil if it is gone or not an entry.
func (st *Store) load(ctx context.Context, key string) (*Entry, error) {
	storage, _ := st.store()
	data, err := storage.Load(ctx, key)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var e Entry
	if json.Unmarshal(data, &e) != nil {
		return nil, nil
	}
	return &e, nil
}

// record makes an entry count from now on, and schedules its expiry.
func (st *Store) record(e Entry, bucket int64) {
	st.set.add(e)
	st.mu.Lock()
	heap.Push(&st.expiring, expiring{entry: e, bucket: bucket})
	st.bucketLive[bucket]++
	st.mu.Unlock()
}

// expire forgets the entries whose sessions have all ended, deletes them
// from storage, and deletes the buckets they emptied.
func (st *Store) expire(ctx context.Context, now int64) {
	horizon := (now - int64(syncOverlap/time.Second)) / int64(signOutBucket/time.Second)
	for {
		st.mu.Lock()
		if st.expiring.Len() == 0 || st.expiring[0].entry.Expires > now {
			st.mu.Unlock()
			return
		}
		x := heap.Pop(&st.expiring).(expiring)
		emptied := false
		st.bucketLive[x.bucket]--
		if st.bucketLive[x.bucket] <= 0 {
			delete(st.bucketLive, x.bucket)
			emptied = x.bucket < horizon
		}
		st.mu.Unlock()
		st.set.remove(x.entry)
		st.deleteKey(ctx, x.key()) // any instance may clean up; deleting twice is harmless
		if emptied {
			st.deleteKey(ctx, path.Dir(x.key()))
		}
	}
}

// deleteKey deletes a key, quietly: what stays is deleted by a later pass
// or another instance.
func (st *Store) deleteKey(ctx context.Context, key string) {
	storage, logger := st.store()
	if err := storage.Delete(ctx, key); err != nil && !errors.Is(err, fs.ErrNotExist) {
		logger.Debug("could not delete an expired sign-out record", zap.Error(err))
	}
}

func (st *Store) syncFailed(err error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.failing {
		st.logger.Error("revocation sync failed; sign-outs from other instances are not seen until it recovers", zap.Error(err))
		st.failing = true
	}
}

// Revoked tells whether a session is revoked — by its ID, its user's
// "everywhere" (issuedMs is its sign-in time) or its provider session —
// from memory only.
func (st *Store) Revoked(sessionID, userID, sid string, issuedMs int64) bool {
	return st.set.revoked(sessionID, userID, sid, issuedMs)
}

// UserRevoked tells whether a user signed out everywhere after issuedMs,
// from memory only: bearer tokens issued before it are refused.
func (st *Store) UserRevoked(userID string, issuedMs int64) bool {
	return st.set.userRevoked(userID, issuedMs)
}

// Add records sign-outs: at once in this process, then in storage for
// the others. A storage error is returned after the local record is made.
func (st *Store) Add(ctx context.Context, entries ...Entry) error {
	now := st.now()
	bucket := now.Unix() / int64(signOutBucket/time.Second)
	for _, e := range entries {
		if !st.markSeen(bucket, e.keyAt(now)) {
			st.record(e, bucket)
		}
	}
	storage, _ := st.store()
	for _, e := range entries {
		data, _ := json.Marshal(e)
		if err := storage.Store(ctx, e.keyAt(now), data); err != nil {
			return fmt.Errorf("recording the sign-out in storage: %w", err)
		}
	}
	// The bucket's new mark, after its entries: a sync that reads it lists
	// the bucket and finds them.
	mark := make([]byte, 16)
	_, _ = rand.Read(mark)
	if err := storage.Store(ctx, markKey(bucket), []byte(hex.EncodeToString(mark))); err != nil {
		return fmt.Errorf("recording the sign-out in storage: %w", err)
	}
	return nil
}
