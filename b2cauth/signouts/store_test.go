package signouts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

func newStore(t *testing.T) (*Store, certmagic.Storage) {
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	return New(storage, time.Second, zap.NewNop()), storage
}

// files lists the files under a storage directory.
func files(t *testing.T, storage certmagic.Storage, dir string) []string {
	t.Helper()
	keys, err := storage.List(context.Background(), dir, true)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, k := range keys {
		if info, err := storage.Stat(context.Background(), k); err == nil && info.IsTerminal {
			out = append(out, k)
		}
	}
	return out
}

// previousVersionName is how the previous version named an entry in its
// flat directory: <kind>_<first 16 bytes of SHA-256(kind NUL value), hex>,
// and _<before> for a user's.
func previousVersionName(kind, value string, before int64) string {
	sum := sha256.Sum256([]byte(kind + "\x00" + value))
	name := kind + "_" + hex.EncodeToString(sum[:16])
	if kind == KindUser {
		name += "_" + strconv.FormatInt(before, 10)
	}
	return name
}

// TestPreviousVersionLayout: a storage written by the previous version
// (flat b2c_auth/revocations/<name> entries, JSON; b2c_auth/sids/<sid
// hash>_<expiry> sign-in records, empty) keeps being honoured after the
// upgrade, and while an instance of the previous version keeps writing
// there during a rolling upgrade; what has expired is deleted.
func TestPreviousVersionLayout(t *testing.T) {
	ctx := context.Background()
	st, storage := newStore(t)
	exp := time.Now().Add(time.Hour).Unix()
	write := func(kind, value string, before, expires int64) {
		data, _ := json.Marshal(map[string]any{"kind": kind, "value": value, "before": before, "expires": expires})
		if err := storage.Store(ctx, "b2c_auth/revocations/"+previousVersionName(kind, value, before), data); err != nil {
			t.Fatal(err)
		}
	}
	signIn := func(sid string, expires int64) {
		sum := sha256.Sum256([]byte(sid))
		if err := storage.Store(ctx, "b2c_auth/sids/"+hex.EncodeToString(sum[:16])+"_"+strconv.FormatInt(expires, 10), []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	issued := time.Now().UnixMilli()
	write(KindSession, "session-1", 0, exp)
	write(KindUser, "user-9", issued+1, exp)
	write(KindSID, "provider-session-1", 0, exp)
	write(KindSession, "long-gone", 0, time.Now().Add(-time.Minute).Unix())
	signIn("provider-session-2", exp)
	signIn("ended-provider-session", time.Now().Add(-time.Minute).Unix())
	// Damaged or foreign files are ignored.
	_ = storage.Store(ctx, "b2c_auth/revocations/session_garbage", []byte("{not json"))

	st.Sync(ctx)
	for _, c := range []struct {
		what               string
		session, user, sid string
		issuedMs           int64
		want               bool
	}{
		{"a signed-out session", "session-1", "u", "", issued, true},
		{"a session signed out everywhere", "s", "user-9", "", issued, true},
		{"a later session of that user", "s", "user-9", "", issued + 10, false},
		{"a provider session ended", "s", "u", "provider-session-1", issued, true},
		{"another session", "session-2", "u", "x", issued, false},
	} {
		if got := st.Revoked(c.session, c.user, c.sid, c.issuedMs); got != c.want {
			t.Errorf("%s: revoked %v, want %v", c.what, got, c.want)
		}
	}
	if known, _ := st.KnownSignIn(ctx, "provider-session-2"); !known {
		t.Error("a sign-in recorded by the previous version is unknown: its front-channel logout would do nothing")
	}
	if known, _ := st.KnownSignIn(ctx, "ended-provider-session"); known {
		t.Error("an ended sign-in of the previous version is known")
	}
	for _, k := range append(files(t, storage, "b2c_auth/revocations"), files(t, storage, "b2c_auth/sids")...) {
		if strings.HasSuffix(k, previousVersionName(KindSession, "long-gone", 0)) || strings.HasPrefix(path.Base(k), sidHash("ended-provider-session")) {
			t.Errorf("an expired entry of the previous version stays: %s", k)
		}
	}

	// During a rolling upgrade, an instance of the previous version goes on
	// writing its layout: the next sync sees it.
	write(KindSession, "session-3", 0, exp)
	st.Sync(ctx)
	if !st.Revoked("session-3", "u", "", issued) {
		t.Error("a sign-out written by an instance of the previous version is not seen")
	}
}

// TestEntriesExpire: sign-outs and sign-in records are deleted once their
// sessions have ended, with the buckets they emptied, and memory forgets
// them.
func TestEntriesExpire(t *testing.T) {
	ctx := context.Background()
	st, storage := newStore(t)
	past := time.Now().Add(-2 * time.Hour)
	// Written two hours ago (a bucket of then), expired a minute ago.
	ended := Entry{Kind: KindSession, Value: "ended", Expires: time.Now().Add(-time.Minute).Unix()}
	data, _ := json.Marshal(ended)
	if err := storage.Store(ctx, ended.keyAt(past), data); err != nil {
		t.Fatal(err)
	}
	if err := st.Add(ctx, Entry{Kind: KindSession, Value: "live", Expires: time.Now().Add(time.Hour).Unix()}); err != nil {
		t.Fatal(err)
	}
	if err := st.RecordSignIn(ctx, "ended-sid", past); err != nil {
		t.Fatal(err)
	}
	if err := st.RecordSignIn(ctx, "live-sid", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}

	fresh := New(storage, time.Second, zap.NewNop())
	fresh.Sync(ctx)
	if fresh.Revoked("ended", "", "", 0) || !fresh.Revoked("live", "", "", 0) || fresh.Len() != 1 {
		t.Errorf("memory after the first sync: %d entries", fresh.Len())
	}
	for _, k := range files(t, storage, "b2c_auth") {
		if k == ended.keyAt(past) || path.Base(k) == sidHash("ended-sid") {
			t.Errorf("an ended entry stays in storage: %s", k)
		}
	}
	if keys, _ := storage.List(ctx, path.Dir(ended.keyAt(past)), false); len(keys) != 0 {
		t.Errorf("an emptied bucket stays: %v", keys)
	}
	if known, _ := fresh.KnownSignIn(ctx, "live-sid"); !known {
		t.Error("a live sign-in record was pruned")
	}
	if known, _ := fresh.KnownSignIn(ctx, "ended-sid"); known {
		t.Error("an ended sign-in record is still known")
	}

	// An entry that expires while in memory is forgotten and deleted.
	short := Entry{Kind: KindSession, Value: "short", Expires: time.Now().Unix()}
	if err := fresh.Add(ctx, short); err != nil {
		t.Fatal(err)
	}
	fresh.expire(ctx, time.Now().Unix()+1)
	if fresh.Revoked("short", "", "", 0) || fresh.Len() != 1 {
		t.Errorf("an expired entry stays in memory (%d entries)", fresh.Len())
	}
	if storage.Exists(ctx, short.keyAt(time.Now())) {
		t.Error("an expired entry stays in storage")
	}
}

// TestLaterEntriesWin: when two entries cover the same session, sid or
// user, the one that expires later decides, and an older one expiring
// never lifts a newer one.
func TestLaterEntriesWin(t *testing.T) {
	ctx := context.Background()
	st, _ := newStore(t)
	now := time.Now()
	first := Entry{Kind: KindUser, Value: "u", Before: now.UnixMilli(), Expires: now.Add(time.Minute).Unix()}
	second := Entry{Kind: KindUser, Value: "u", Before: now.UnixMilli() + 5000, Expires: now.Add(time.Hour).Unix()}
	sidA := Entry{Kind: KindSID, Value: "p", Expires: now.Add(time.Minute).Unix()}
	sidB := Entry{Kind: KindSID, Value: "p", Expires: now.Add(time.Hour).Unix()}
	if err := st.Add(ctx, second, first, sidB, sidA); err != nil {
		t.Fatal(err)
	}
	if !st.UserRevoked("u", now.UnixMilli()+4000) {
		t.Error("the later everywhere does not cover a session issued before it")
	}
	st.expire(ctx, now.Add(2*time.Minute).Unix())
	if !st.UserRevoked("u", now.UnixMilli()+4000) || !st.Revoked("x", "v", "p", 0) {
		t.Error("an older entry expiring lifted a newer one")
	}
}

// TestConcurrentUse: requests read while syncs and sign-outs write (run
// with -race).
func TestConcurrentUse(t *testing.T) {
	ctx := context.Background()
	st, _ := newStore(t)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := range 50 {
				_ = st.Add(ctx, Entry{Kind: KindSession, Value: strconv.Itoa(i*100 + j), Expires: time.Now().Add(time.Hour).Unix()})
			}
		}()
		go func() {
			defer wg.Done()
			for j := range 200 {
				st.Revoked(strconv.Itoa(j), "u", "s", 0)
			}
			st.Sync(ctx)
		}()
	}
	wg.Wait()
	if st.Len() != 200 || !st.Revoked("349", "", "", 0) {
		t.Errorf("%d entries after concurrent sign-outs, want 200", st.Len())
	}
}
