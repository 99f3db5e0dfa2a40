package signouts

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"path"
	"strconv"
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

// noDirStat is a storage that, like Redis's, cannot tell a directory's
// modification time.
type noDirStat struct{ certmagic.Storage }

func (s noDirStat) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	info, err := s.Storage.Stat(ctx, key)
	if err == nil && !info.IsTerminal {
		return certmagic.KeyInfo{}, fs.ErrNotExist
	}
	return info, err
}

// TestMarksSpareListingsAndOldWritersAreStillRead: a sync lists a minute
// again only when it changed — another instance's sign-out is read at the
// next pass — and an entry written without a mark (by a version before the
// marks) is read at the next pass where the storage tells a directory's
// modification time (file systems), else within fullListEvery passes.
func TestMarksSpareListingsAndOldWritersAreStillRead(t *testing.T) {
	ctx := context.Background()
	for name, tc := range map[string]struct {
		wrap       func(certmagic.Storage) certmagic.Storage
		withinPass int
	}{
		"file system":                {func(s certmagic.Storage) certmagic.Storage { return s }, 1},
		"no directory times (Redis)": {func(s certmagic.Storage) certmagic.Storage { return noDirStat{s} }, fullListEvery},
	} {
		storage := tc.wrap(&certmagic.FileStorage{Path: t.TempDir()})
		reader, writer := New(storage, time.Second, zap.NewNop()), New(storage, time.Second, zap.NewNop())
		reader.Sync(ctx) // the first pass: everything
		exp := time.Now().Add(time.Hour).Unix()
		if err := writer.Add(ctx, Entry{Kind: KindSession, Value: "new-writer", Expires: exp}); err != nil {
			t.Fatal(err)
		}
		reader.Sync(ctx)
		if !reader.Revoked("new-writer", "", "", 0) {
			t.Fatalf("%s: a sign-out with its mark was not read at the next pass", name)
		}
		old := Entry{Kind: KindSession, Value: "old-writer", Expires: exp}
		data, _ := json.Marshal(old)
		if err := storage.Store(ctx, old.keyAt(time.Now()), data); err != nil {
			t.Fatal(err)
		}
		passes := 0
		for !reader.Revoked("old-writer", "", "", 0) {
			if passes++; passes > tc.withinPass {
				t.Fatalf("%s: an entry without a mark not read after %d passes", name, tc.withinPass)
			}
			reader.Sync(ctx)
		}
	}
}
