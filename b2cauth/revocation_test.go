package b2cauth

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

// countingStorage counts the storage operations made through it. Like
// unnamedStorage, it has no String, so each handler gets a revocation list
// of its own, as each process would.
type countingStorage struct {
	certmagic.Storage
	mu  sync.Mutex
	ops map[string]int
}

func newCountingStorage(dir string) *countingStorage {
	return &countingStorage{Storage: &certmagic.FileStorage{Path: dir}, ops: map[string]int{}}
}

func (c *countingStorage) count(op string) {
	c.mu.Lock()
	c.ops[op]++
	c.mu.Unlock()
}

// take returns the counts since the last take.
func (c *countingStorage) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.ops
	c.ops = map[string]int{}
	return out
}

func (c *countingStorage) Store(ctx context.Context, k string, v []byte) error {
	c.count("store")
	return c.Storage.Store(ctx, k, v)
}
func (c *countingStorage) Load(ctx context.Context, k string) ([]byte, error) {
	c.count("load")
	return c.Storage.Load(ctx, k)
}
func (c *countingStorage) Delete(ctx context.Context, k string) error {
	c.count("delete")
	return c.Storage.Delete(ctx, k)
}
func (c *countingStorage) Exists(ctx context.Context, k string) bool {
	c.count("exists")
	return c.Storage.Exists(ctx, k)
}
func (c *countingStorage) List(ctx context.Context, p string, rec bool) ([]string, error) {
	c.count("list")
	return c.Storage.List(ctx, p, rec)
}
func (c *countingStorage) Stat(ctx context.Context, k string) (certmagic.KeyInfo, error) {
	c.count("stat")
	return c.Storage.Stat(ctx, k)
}

// TestSignOutStateCostsO1 counts the storage operations of each sign-out
// state operation, with few and with 1,000 sign-ins and sign-outs recorded:
// the counts must not grow with them. (The figures at 100,000 are in the
// README, from the load test.)
func TestSignOutStateCostsO1(t *testing.T) {
	type costs struct{ signOut, frontChannelRandom, frontChannelKnown, syncOneNew, syncNothingNew map[string]int }
	measure := func(t *testing.T, recorded int) costs {
		dir := t.TempDir()
		st1, st2 := newCountingStorage(dir), newCountingStorage(dir)
		h1, p, s := setup(t, func(h *Handler) { h.storage = st1 })
		h2 := newTestHandler(t, p, func(h *Handler) { h.storage = st2 })
		ctx := context.Background()
		exp := time.Now().Add(time.Hour)
		for i := range recorded {
			if err := h1.revocations.recordSignIn(ctx, "sid-"+strconv.Itoa(i), exp); err != nil {
				t.Fatal(err)
			}
			if err := h1.revocations.add(ctx, revocation{Kind: revokeSession, Value: randomString(), Expires: exp.Unix()}); err != nil {
				t.Fatal(err)
			}
		}
		h2.revocations.sync(ctx) // the first pass reads what is live
		if h2.revocations.set.size.Load() != int64(recorded) {
			t.Fatalf("the first sync read %d of %d sign-outs", h2.revocations.set.size.Load(), recorded)
		}
		cookies := signedIn(t, h1, p, s, func(c map[string]any) { c["sid"] = "known-provider-session" })
		other := signedIn(t, h1, p, s, nil)
		st1.take()
		st2.take()

		var c costs
		logoutWith(h1, "", other)
		c.signOut = st1.take()
		serve(h1, navigation("GET", frontChannelPath+"?sid="+randomString()))
		c.frontChannelRandom = st1.take()
		serve(h1, navigation("GET", frontChannelPath+"?sid=known-provider-session"))
		c.frontChannelKnown = st1.take()
		if opens(h1, cookies) {
			t.Error("the front-channel logout did not end the session")
		}
		h2.revocations.sync(ctx)
		c.syncOneNew = st2.take()
		if opens(h2, other) || opens(h2, cookies) {
			t.Error("the other instance did not see the sign-outs")
		}
		h2.revocations.sync(ctx)
		c.syncNothingNew = st2.take()
		return c
	}
	few, many := measure(t, 3), measure(t, 1000)
	t.Logf("with 1,000 recorded: %+v", many)
	// The number of minutes a sync lists depends on the clock, not on what
	// is recorded: compare the rest.
	for _, c := range []costs{few, many} {
		for _, m := range []map[string]int{c.syncOneNew, c.syncNothingNew} {
			if m["list"] > 10 {
				t.Errorf("a sync lists %d directories", m["list"])
			}
			delete(m, "list")
		}
	}
	if fmt.Sprint(few) != fmt.Sprint(many) {
		t.Errorf("the costs grow with what is recorded:\n3:     %+v\n1,000: %+v", few, many)
	}
	if many.signOut["store"] != 1 || many.signOut["list"]+many.signOut["load"] != 0 {
		t.Errorf("a sign-out costs %v, want one store", many.signOut)
	}
	if many.frontChannelRandom["load"] > 1 || many.frontChannelRandom["list"]+many.frontChannelRandom["store"] != 0 {
		t.Errorf("a front-channel request with a random sid costs %v, want at most one load", many.frontChannelRandom)
	}
	if many.frontChannelKnown["load"] != 1 || many.frontChannelKnown["store"] != 1 || many.frontChannelKnown["list"] != 0 {
		t.Errorf("a front-channel logout costs %v, want one load and one store", many.frontChannelKnown)
	}
	// A pass lists the few minutes since the last one (and a margin) and
	// the two legacy directories, and loads only what is new.
	if many.syncOneNew["load"] != 2 {
		t.Errorf("a sync after two sign-outs costs %v, want two loads and a few lists", many.syncOneNew)
	}
	if many.syncNothingNew["load"] != 0 || many.syncNothingNew["store"] != 0 {
		t.Errorf("a sync with nothing new costs %v, want no load", many.syncNothingNew)
	}
}

// TestSignOutsOfThePreviousVersion: a storage written by the previous
// version (flat b2c_auth/revocations/<kind>_<hash> entries and
// b2c_auth/sids/<hash>_<expiry> sign-in records, read whole) keeps being
// honoured after the upgrade, and while an instance of the previous
// version keeps writing there during a rolling upgrade; expired entries
// are deleted.
func TestSignOutsOfThePreviousVersion(t *testing.T) {
	dir := t.TempDir()
	h1, p, s := setup(t, func(h *Handler) { h.storage = unnamedStorage{&certmagic.FileStorage{Path: dir}} })
	ctx := context.Background()
	// What the previous version wrote, in its format.
	legacyStore := func(e revocation) {
		data, _ := json.Marshal(e)
		if err := h1.storage.Store(ctx, path.Join(legacyRevocationDir, e.name()), data); err != nil {
			t.Fatal(err)
		}
	}
	legacySignIn := func(sid string, expires time.Time) {
		if err := h1.storage.Store(ctx, path.Join(legacySignInDir, sidHash(sid)+"_"+strconv.FormatInt(expires.Unix(), 10)), []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	exp := time.Now().Add(time.Hour)
	revoked := signedIn(t, h1, p, s, nil)
	everywhere := signedIn(t, h1, p, s, func(c map[string]any) { c["oid"], c["sub"] = "user-9", "user-9" })
	byProvider := signedIn(t, h1, p, s, func(c map[string]any) { c["sid"] = "legacy-provider-session" })
	sessionID := func(cookies []*http.Cookie) string {
		return h1.readSession(nil, withCookies(navigation("GET", "/"), cookies)).session.ID
	}
	legacyStore(revocation{Kind: revokeSession, Value: sessionID(revoked), Expires: exp.Unix()})
	legacyStore(revocation{Kind: revokeUser, Value: "user-9", Before: time.Now().UnixMilli() + 1, Expires: exp.Unix()})
	legacyStore(revocation{Kind: revokeSession, Value: "long-gone", Expires: time.Now().Add(-time.Minute).Unix()})
	_ = h1.storage.Delete(ctx, path.Join(signInDir, sidHash("legacy-provider-session"))) // as if signed in on the previous version
	legacySignIn("legacy-provider-session", exp)
	legacySignIn("ended-provider-session", time.Now().Add(-time.Minute))

	h2 := newTestHandler(t, p, func(h *Handler) { h.storage = unnamedStorage{&certmagic.FileStorage{Path: dir}} })
	h2.revocations.sync(ctx)
	if opens(h2, revoked) || opens(h2, everywhere) {
		t.Error("a sign-out recorded by the previous version is not honoured")
	}
	if !opens(h2, byProvider) {
		t.Fatal("a session with no sign-out is refused")
	}
	serve(h2, navigation("GET", frontChannelPath+"?sid=legacy-provider-session"))
	if opens(h2, byProvider) {
		t.Error("front-channel logout of a sign-in recorded by the previous version does nothing")
	}
	for _, k := range []string{
		path.Join(legacyRevocationDir, revocation{Kind: revokeSession, Value: "long-gone"}.name()),
		path.Join(legacySignInDir, sidHash("ended-provider-session")+"_"),
	} {
		for _, have := range storedKeys(t, h2.storage, path.Dir(k)) {
			if len(have) >= len(k) && have[:len(k)] == k {
				t.Errorf("an expired entry of the previous version stays: %s", have)
			}
		}
	}

	// During a rolling upgrade, an instance of the previous version goes on
	// writing its layout: the next sync sees it.
	later := signedIn(t, h1, p, s, nil)
	legacyStore(revocation{Kind: revokeSession, Value: sessionID(later), Expires: exp.Unix()})
	h2.revocations.sync(ctx)
	if opens(h2, later) {
		t.Error("a sign-out written by an instance of the previous version is not seen")
	}
}

// TestSignOutRecordsExpire: sign-outs and sign-in records are deleted once
// their sessions have ended, with the buckets they emptied, and memory
// forgets them.
func TestSignOutRecordsExpire(t *testing.T) {
	dir := t.TempDir()
	h, _, _ := setup(t, func(h *Handler) { h.storage = unnamedStorage{&certmagic.FileStorage{Path: dir}} })
	ctx := context.Background()
	rv := h.revocations
	past := time.Now().Add(-2 * time.Hour)
	// Written two hours ago (a bucket of then), expired a minute ago.
	e := revocation{Kind: revokeSession, Value: "ended", Expires: time.Now().Add(-time.Minute).Unix()}
	data, _ := json.Marshal(e)
	if err := h.storage.Store(ctx, e.keyAt(past), data); err != nil {
		t.Fatal(err)
	}
	live := revocation{Kind: revokeSession, Value: "live", Expires: time.Now().Add(time.Hour).Unix()}
	if err := rv.add(ctx, live); err != nil {
		t.Fatal(err)
	}
	if err := rv.recordSignIn(ctx, "ended-sid", time.Now().Add(-2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := rv.recordSignIn(ctx, "live-sid", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	fresh := newRevocations(h.storage, time.Second, h.logger)
	fresh.sync(ctx)
	if fresh.revoked("ended", "", "", 0) || !fresh.revoked("live", "", "", 0) {
		t.Error("memory after the first sync: wrong entries")
	}
	for _, k := range storedKeys(t, h.storage, "b2c_auth") {
		if k == e.keyAt(past) || path.Base(k) == sidHash("ended-sid") {
			t.Errorf("an ended entry stays in storage: %s", k)
		}
	}
	if known, _ := fresh.knownSignIn(ctx, "live-sid"); !known {
		t.Error("a live sign-in record was pruned")
	}
	if known, _ := fresh.knownSignIn(ctx, "ended-sid"); known {
		t.Error("an ended sign-in record is still known")
	}
	if keys, _ := h.storage.List(ctx, path.Join(signOutDir, strconv.FormatInt(past.Unix()/60, 10)), false); len(keys) != 0 {
		t.Errorf("an emptied bucket stays: %v", keys)
	}

	// An entry that expires while in memory is forgotten and deleted.
	short := revocation{Kind: revokeSession, Value: "short", Expires: time.Now().Unix()}
	if err := fresh.add(ctx, short); err != nil {
		t.Fatal(err)
	}
	fresh.expire(ctx, time.Now().Unix()+1)
	if fresh.revoked("short", "", "", 0) || fresh.set.size.Load() != 1 {
		t.Errorf("an expired entry stays in memory (%d entries)", fresh.set.size.Load())
	}
	if h.storage.Exists(ctx, short.keyAt(time.Now())) {
		t.Error("an expired entry stays in storage")
	}
}
