package b2cauth

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/signouts"
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

// isMark tells a bucket's mark (b2c_auth/signout_marks/<minute>), counted
// apart: how many a pass reads depends on the clock, not on what is
// recorded.
func isMark(k string) bool { return strings.HasPrefix(k, "b2c_auth/signout_marks/") }

func (c *countingStorage) Store(ctx context.Context, k string, v []byte) error {
	c.count(map[bool]string{true: "store mark", false: "store"}[isMark(k)])
	return c.Storage.Store(ctx, k, v)
}
func (c *countingStorage) Load(ctx context.Context, k string) ([]byte, error) {
	c.count(map[bool]string{true: "load mark", false: "load"}[isMark(k)])
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
// docs/performance.md, from the load test.)
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
			if err := h1.signouts.RecordSignIn(ctx, "sid-"+strconv.Itoa(i), exp); err != nil {
				t.Fatal(err)
			}
			if err := h1.signouts.Add(ctx, signouts.Entry{Kind: signouts.KindSession, Value: randomString(), Expires: exp.Unix()}); err != nil {
				t.Fatal(err)
			}
		}
		h2.signouts.Sync(ctx) // the first pass reads what is live
		if h2.signouts.Len() != recorded {
			t.Fatalf("the first sync read %d of %d sign-outs", h2.signouts.Len(), recorded)
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
		h2.signouts.Sync(ctx)
		c.syncOneNew = st2.take()
		if opens(h2, other) || opens(h2, cookies) {
			t.Error("the other instance did not see the sign-outs")
		}
		h2.signouts.Sync(ctx)
		c.syncNothingNew = st2.take()
		return c
	}
	few, many := measure(t, 3), measure(t, 1000)
	t.Logf("with 1,000 recorded: %+v", many)
	// A pass with nothing new reads each minute's mark and lists none.
	if many.syncNothingNew["list"] != 0 || many.syncNothingNew["load mark"] > 4 {
		t.Errorf("a sync with nothing new costs %v, want a mark per minute and no listing", many.syncNothingNew)
	}
	// The number of minutes a sync reads depends on the clock, not on what
	// is recorded: compare the rest.
	for _, c := range []costs{few, many} {
		for _, m := range []map[string]int{c.syncOneNew, c.syncNothingNew} {
			if m["list"] > 10 || m["load mark"] > 10 {
				t.Errorf("a sync lists %d directories and reads %d marks", m["list"], m["load mark"])
			}
			delete(m, "list")
			delete(m, "load mark")
			delete(m, "stat") // a directory's time, per minute
		}
	}
	if fmt.Sprint(few) != fmt.Sprint(many) {
		t.Errorf("the costs grow with what is recorded:\n3:     %+v\n1,000: %+v", few, many)
	}
	if many.signOut["store"] != 1 || many.signOut["store mark"] != 1 || many.signOut["list"]+many.signOut["load"] != 0 {
		t.Errorf("a sign-out costs %v, want one store and its minute's mark", many.signOut)
	}
	if many.frontChannelRandom["load"] > 1 || many.frontChannelRandom["list"]+many.frontChannelRandom["store"] != 0 {
		t.Errorf("a front-channel request with a random sid costs %v, want at most one load", many.frontChannelRandom)
	}
	if many.frontChannelKnown["load"] != 1 || many.frontChannelKnown["store"] != 1 || many.frontChannelKnown["store mark"] != 1 || many.frontChannelKnown["list"] != 0 {
		t.Errorf("a front-channel logout costs %v, want one load, one store and its minute's mark", many.frontChannelKnown)
	}
	// A pass lists the few minutes since the last one (and a margin), and
	// loads only what is new.
	if many.syncOneNew["load"] != 2 {
		t.Errorf("a sync after two sign-outs costs %v, want two loads and a few lists", many.syncOneNew)
	}
	if many.syncNothingNew["load"] != 0 || many.syncNothingNew["store"] != 0 {
		t.Errorf("a sync with nothing new costs %v, want no load", many.syncNothingNew)
	}
}
