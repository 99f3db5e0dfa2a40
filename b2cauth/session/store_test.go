package session

import (
	"context"
	"encoding/base64"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

// listingStorage is file storage that notes the directories listed.
type listingStorage struct {
	*certmagic.FileStorage
	mu     sync.Mutex
	listed []string
}

func (l *listingStorage) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	l.mu.Lock()
	l.listed = append(l.listed, prefix)
	l.mu.Unlock()
	return l.FileStorage.List(ctx, prefix, recursive)
}

// records are the session records in storage (not the users' indexes).
func records(t *testing.T, st certmagic.Storage) []string {
	t.Helper()
	keys, err := st.List(t.Context(), Dir, true)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, k := range keys {
		if info, err := st.Stat(t.Context(), k); err == nil && info.IsTerminal && !strings.HasPrefix(k, usersDir+"/") {
			out = append(out, k)
		}
	}
	return out
}

// TestStoredSessionsAreSwept: records of ended sessions go, once an hour,
// by listing only the hours gone by: the live sessions' hours are never
// listed, whatever their number.
func TestStoredSessionsAreSwept(t *testing.T) {
	storage := &listingStorage{FileStorage: &certmagic.FileStorage{Path: t.TempDir()}}
	st := &Store{Storage: storage}
	ctx := t.Context()
	now := time.Now().Unix()
	for i, expires := range []int64{now - 7200, now - 3700, now + 60, now + 7200, now + 7200} {
		if err := st.Put(ctx, NewSecret(), expires, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	live := NewSecret()
	if err := st.Put(ctx, live, now+3600, []byte("live")); err != nil {
		t.Fatal(err)
	}
	// Two users' indexes: one whose only session ended, one live.
	if err := st.Admit(ctx, "ended-user", NewSecret(), now-7200, now-7200-3600, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := st.Admit(ctx, "live-user", live, now+3600, now, time.Hour); err != nil {
		t.Fatal(err)
	}
	storage.listed = nil
	n, err := st.Sweep(ctx, now)
	if err != nil || n != 3 {
		t.Fatalf("swept %d (%v), want the 2 ended records and the ended user's index", n, err)
	}
	if users, _ := storage.List(ctx, Dir+"/users", true); len(users) == 0 || !slices.ContainsFunc(users, func(k string) bool { return strings.HasSuffix(k, "/live-user") }) || slices.ContainsFunc(users, func(k string) bool { return strings.HasSuffix(k, "/ended-user") }) {
		t.Errorf("users' indexes after the sweep: %v, want only live-user's", users)
	}
	if recs := records(t, storage); len(recs) != 4 {
		t.Errorf("records left: %d, want the 4 live", len(recs))
	}
	if got, err := st.Get(ctx, live, now+3600); err != nil || string(got) != "live" {
		t.Errorf("a live record after the sweep: %q, %v", got, err)
	}
	for _, dir := range storage.listed {
		// The users' indexes: their buckets are listed (a few), never a
		// live bucket's indexes.
		if users := Dir + "/users"; dir == users || (strings.HasPrefix(dir, users+"/") && !strings.Contains(strings.TrimPrefix(dir, users+"/"), "/")) {
			continue
		}
		if dir != Dir && !strings.HasSuffix(dir, "/"+strconv.FormatInt((now-7200)/3600, 10)) && !strings.HasSuffix(dir, "/"+strconv.FormatInt((now-3700)/3600, 10)) {
			t.Errorf("the sweep listed %s, an hour of live sessions", dir)
		}
	}
	storage.listed = nil
	if n, _ := st.Sweep(ctx, now+60); n != 0 || len(storage.listed) != 0 {
		t.Errorf("a second sweep within the hour: %d deleted, %d listings", n, len(storage.listed))
	}
	// A record opens only with its own secret, and not once tampered.
	if _, err := st.Get(ctx, NewSecret(), now+3600); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("another secret: %v", err)
	}
}

// TestUsersAreBounded: a user signs in at most MaxPerMinute times a minute
// and keeps at most MaxLive records: past that, the oldest record goes.
func TestUsersAreBounded(t *testing.T) {
	st := &Store{Storage: &certmagic.FileStorage{Path: t.TempDir()}}
	ctx, now, lifetime := t.Context(), time.Now().Unix(), 8*time.Hour
	var first []byte
	for i := range MaxLive + 5 {
		if i > 0 && i%MaxPerMinute == 0 {
			if err := st.Admit(ctx, "ada", NewSecret(), now+int64(lifetime/time.Second), now, lifetime); !errors.Is(err, ErrTooManySignIns) {
				t.Fatalf("sign-in %d within a minute: %v", MaxPerMinute+1, err)
			}
			now += 61
		}
		secret := NewSecret()
		if i == 0 {
			first = secret
		}
		expires := now + int64(lifetime/time.Second)
		if err := st.Admit(ctx, "ada", secret, expires, now, lifetime); err != nil {
			t.Fatal(err)
		}
		if err := st.Put(ctx, secret, expires, []byte("s")); err != nil {
			t.Fatal(err)
		}
		now++
	}
	if n := len(records(t, st.Storage)); n != MaxLive {
		t.Errorf("%d records of one user, want %d", n, MaxLive)
	}
	if _, err := st.Get(ctx, first, time.Now().Unix()+int64(lifetime/time.Second)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the oldest record: %v, want it gone", err)
	}
	// Another user is not bounded by the first.
	if err := st.Admit(ctx, "grace", NewSecret(), now+60, now, lifetime); err != nil {
		t.Errorf("another user: %v", err)
	}
}

// TestCodecKeyRing: the first key seals, every key opens; a value sealed
// for another purpose, or tampered with, does not open.
func TestCodecKeyRing(t *testing.T) {
	key := func(s string) []byte { k, _ := DecodeSecret(base64.StdEncoding.EncodeToString([]byte(s))); return k }
	oldKey, newKey := key("the-old-key-the-old-key-the-old!"), key("the-new-key-the-new-key-the-new!")
	before, _ := NewCodec([][]byte{oldKey})
	rotated, _ := NewCodec([][]byte{newKey, oldKey})
	dropped, _ := NewCodec([][]byte{newKey})
	sealed := before.Seal([]byte("hello"), "purpose")
	if got, ok := rotated.Open(sealed, "purpose"); !ok || string(got) != "hello" {
		t.Error("a value sealed with the old key does not open after rotation")
	}
	if _, ok := dropped.Open(sealed, "purpose"); ok {
		t.Error("a value sealed with a removed key opens")
	}
	if _, ok := before.Open(sealed, "other purpose"); ok {
		t.Error("a value opens for another purpose")
	}
	tampered := []byte(sealed)
	tampered[len(tampered)/2] ^= 1
	if _, ok := before.Open(string(tampered), "purpose"); ok {
		t.Error("a tampered value opens")
	}
	if _, err := DecodeSecret("c2hvcnQ="); err == nil {
		t.Error("a secret of 5 bytes was taken")
	}
}

// TestChunkedCookies: a value over a cookie's size is split, each chunk
// under 4 KB, and read back whole; a missing chunk is no value.
func TestChunkedCookies(t *testing.T) {
	value := strings.Repeat("abcdefghij", 1000) // 10 KB
	rec := httptest.NewRecorder()
	if err := WriteChunked(rec, httptest.NewRequest("GET", "/", nil), http.Cookie{Name: "s", Path: "/"}, value); err != nil {
		t.Fatal(err)
	}
	cookies := rec.Result().Cookies()
	if len(cookies) < 3 {
		t.Fatalf("%d cookies for 10 KB", len(cookies))
	}
	req := httptest.NewRequest("GET", "/", nil)
	for _, c := range cookies {
		if len(c.Name)+len(c.Value) > 4000 {
			t.Errorf("cookie %s is %d bytes", c.Name, len(c.Value))
		}
		req.AddCookie(c)
	}
	got := ReadChunked(req, "s")
	if !got.Present() || got.Join() != value || !got.Equals(value) || got.Equals(value+"x") {
		t.Error("the chunks do not read back as the value")
	}
	partial := httptest.NewRequest("GET", "/", nil)
	for _, c := range cookies[:len(cookies)-1] {
		partial.AddCookie(c)
	}
	if v := ReadChunked(partial, "s"); v.Present() {
		t.Error("a value with a missing chunk was read")
	}
}
