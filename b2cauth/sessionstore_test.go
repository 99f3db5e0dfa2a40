package b2cauth

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/session"
)

// flakyStorage is file storage that can be taken down, and that counts
// the directories listed.
type flakyStorage struct {
	*certmagic.FileStorage
	mu     sync.Mutex
	down   bool
	listed []string
}

var errStorageDown = errors.New("storage down")

func (f *flakyStorage) isDown() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.down
}

func (f *flakyStorage) setDown(down bool) {
	f.mu.Lock()
	f.down = down
	f.mu.Unlock()
}

func (f *flakyStorage) Load(ctx context.Context, key string) ([]byte, error) {
	if f.isDown() {
		return nil, errStorageDown
	}
	return f.FileStorage.Load(ctx, key)
}

func (f *flakyStorage) Store(ctx context.Context, key string, value []byte) error {
	if f.isDown() {
		return errStorageDown
	}
	return f.FileStorage.Store(ctx, key, value)
}

func (f *flakyStorage) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	f.mu.Lock()
	f.listed = append(f.listed, prefix)
	f.mu.Unlock()
	if f.isDown() {
		return nil, errStorageDown
	}
	return f.FileStorage.List(ctx, prefix, recursive)
}

// storedSessions are the session records in storage (not the users'
// indexes).
func storedSessions(t *testing.T, st certmagic.Storage) []string {
	t.Helper()
	keys, err := st.List(t.Context(), session.Dir, true)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range keys {
		if strings.HasPrefix(k, session.Dir+"/users/") {
			continue
		}
		if info, err := st.Stat(t.Context(), k); err == nil && info.IsTerminal {
			out = append(out, k)
		}
	}
	return out
}

func cookieBytes(cs []*http.Cookie) (n int) {
	for _, c := range cs {
		n += len(c.Name) + 1 + len(c.Value)
	}
	return n
}

// TestStoredSessions: with session_store storage the tokens live in
// storage and the cookie is a few hundred bytes at most; another instance
// (or this one after a restart) finds the session through the same
// storage; renewal rewrites the record and changes the cookie, so every
// instance's cache loads the new tokens; sign-out deletes the record, so a
// copy of the cookie opens nothing anywhere.
func TestStoredSessions(t *testing.T) {
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	stored := func(h *Handler) {
		h.SessionStore = "storage"
		h.Scopes = []string{"openid", "offline_access", testClient}
		h.storage = storage
	}
	h, p, s := setup(t, stored)
	clock := time.Now()
	h.now = func() time.Time { return clock }
	bigAccess := strings.Repeat("a", 1500) // the size of B2C's access tokens
	cookies := signedInWithTokens(t, h, p, s, bigAccess, time.Hour)
	if n := cookieBytes(cookies); n > 512 {
		t.Errorf("the stored session's cookies are %d bytes, want at most 512", n)
	}
	if recs := storedSessions(t, storage); len(recs) != 1 {
		t.Fatalf("records after sign-in: %v", recs)
	}
	for _, rec := range storedSessions(t, storage) {
		data, _ := storage.Load(t.Context(), rec)
		if strings.Contains(string(data), "aaaa") || strings.Contains(string(data), "rt-1") {
			t.Error("the record holds a token in the clear")
		}
	}
	res := serve(h, withCookies(navigation("GET", "/"), cookies))
	if !res.reachedNext || upstreamToken(res) != bigAccess {
		t.Fatalf("stored session on its instance: %d, token %.10q", res.Code, upstreamToken(res))
	}

	// Another instance (or a restart): no cache, the same storage.
	other := newTestHandler(t, p, stored)
	other.now = h.now
	res = serve(other, withCookies(navigation("GET", "/"), cookies))
	if name, _ := res.repl.GetString("http.auth.user.name"); !res.reachedNext || name == "" || upstreamToken(res) != bigAccess {
		t.Fatalf("stored session on another instance: %d, name %q", res.Code, name)
	}

	// Renewal: a new record, a new cookie; the other instance loads it.
	clock = clock.Add(58 * time.Minute)
	renewWith(t, p, s, "at-renewed")
	res = serve(h, withCookies(navigation("GET", "/"), cookies))
	renewed := sessionCookies(res)
	if upstreamToken(res) != "at-renewed" || len(renewed) == 0 {
		t.Fatalf("renewal: token %.10q, cookie set %v", upstreamToken(res), len(renewed) > 0)
	}
	if recs := storedSessions(t, storage); len(recs) != 1 {
		t.Errorf("records after renewal: %v (want the one, rewritten)", recs)
	}
	res = serve(other, withCookies(navigation("GET", "/"), renewed))
	if upstreamToken(res) != "at-renewed" {
		t.Errorf("the other instance sees token %.10q after the renewal", upstreamToken(res))
	}

	// Sign-out: the record goes; a copy of the cookie opens nothing on an
	// instance that never saw it.
	serve(h, withCookies(navigation("GET", "/.auth/logout"), renewed))
	if recs := storedSessions(t, storage); len(recs) != 0 {
		t.Errorf("records after sign-out: %v", recs)
	}
	fresh := newTestHandler(t, p, stored)
	fresh.now = h.now
	if res := serve(fresh, withCookies(navigation("GET", "/"), renewed)); res.reachedNext {
		t.Error("a copy of a signed-out stored session opened")
	}
}

// TestStoredSessionsOutlastAStorageOutage: while storage cannot be read, a
// session an instance has cached keeps working; one it has not gets 503
// with Retry-After, and its cookie is kept, not cleared; once storage is
// back it opens.
func TestStoredSessionsOutlastAStorageOutage(t *testing.T) {
	storage := &flakyStorage{FileStorage: &certmagic.FileStorage{Path: t.TempDir()}}
	stored := func(h *Handler) { h.SessionStore = "storage"; h.storage = storage }
	h, p, s := setup(t, stored)
	cookies := signedIn(t, h, p, s, nil)
	other := newTestHandler(t, p, stored)

	storage.setDown(true)
	if res := serve(h, withCookies(navigation("GET", "/"), cookies)); !res.reachedNext {
		t.Errorf("a cached session during the outage: %d", res.Code)
	}
	for _, req := range []*http.Request{navigation("GET", "/"), apiRequest("")} {
		res := serve(other, withCookies(req, cookies))
		if res.Code != http.StatusServiceUnavailable || res.Header().Get("Retry-After") == "" || res.reachedNext {
			t.Errorf("an uncached session during the outage: %d, Retry-After %q", res.Code, res.Header().Get("Retry-After"))
		}
		for _, c := range res.Result().Cookies() {
			if strings.HasPrefix(c.Name, sessionCookie) && c.MaxAge < 0 {
				t.Error("the outage cleared the session cookie")
			}
		}
	}
	// A sign-in cannot keep its session: 503, not a cookie without a record.
	state, nonce, fc := pendingFlow(t, h, "/")
	redeemWith(p, s.sign(t, goodClaims(p, nonce)))
	if res := serve(h, callbackRequest(state, fc, map[string][]string{"code": {"c"}})); res.Code != http.StatusServiceUnavailable || len(sessionCookies(res)) != 0 {
		t.Errorf("a sign-in during the outage: %d, cookies %d", res.Code, len(sessionCookies(res)))
	}

	storage.setDown(false)
	if res := serve(other, withCookies(navigation("GET", "/"), cookies)); !res.reachedNext {
		t.Errorf("after the outage: %d", res.Code)
	}
}

// TestSessionStoreSwitchSignsNobodyOut: sessions written by one
// session_store open with the other (an upgrade from cookie sessions, or
// a change of mind), and a cookie session moves to storage when renewed.
func TestSessionStoreSwitchSignsNobodyOut(t *testing.T) {
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	h, p, s := setup(t, func(h *Handler) { h.storage = storage })
	cookieSession := signedInWithTokens(t, h, p, s, "at-1", time.Hour)
	stored := newTestHandler(t, p, func(h *Handler) { h.SessionStore = "storage"; h.storage = storage })
	if res := serve(stored, withCookies(navigation("GET", "/"), cookieSession)); !res.reachedNext || upstreamToken(res) != "at-1" {
		t.Errorf("a cookie session under session_store storage: %d", res.Code)
	}
	storedOne := signedIn(t, stored, p, s, nil)
	if res := serve(h, withCookies(navigation("GET", "/"), storedOne)); !res.reachedNext {
		t.Errorf("a stored session under session_store cookie: %d", res.Code)
	}
}

// TestSessionTokens: session_tokens keeps only the tokens it names; the
// claims stay whatever it says, and what was left out is empty.
func TestSessionTokens(t *testing.T) {
	for _, tc := range []struct {
		keep                  []string
		wantID, wantAT, renew bool
	}{
		{nil, true, true, true},
		{[]string{"id"}, true, false, false},
		{[]string{"access", "refresh"}, false, true, true},
		{[]string{"none"}, false, false, false},
	} {
		t.Run(strings.Join(tc.keep, "+"), func(t *testing.T) {
			h, p, s := setup(t, func(h *Handler) { h.SessionTokens = tc.keep })
			cookies := signedInWithTokens(t, h, p, s, "at-1", time.Hour)
			res := serve(h, withCookies(navigation("GET", "/"), cookies))
			name, _ := res.repl.GetString("http.auth.user.name")
			idt, _ := res.repl.GetString("http.auth.b2c.id_token")
			if !res.reachedNext || name == "" {
				t.Fatalf("session refused or without claims: %d, name %q", res.Code, name)
			}
			if (idt != "") != tc.wantID || (upstreamToken(res) != "") != tc.wantAT {
				t.Errorf("id token kept %v, access token kept %v", idt != "", upstreamToken(res) != "")
			}
			me := serve(h, withCookies(navigation("GET", "/.auth/me"), cookies))
			var body []map[string]any
			_ = json.Unmarshal(me.Body.Bytes(), &body)
			if len(body) != 1 || (body[0]["id_token"] != nil) != tc.wantID {
				t.Errorf("/.auth/me: %s", me.Body)
			}
			refresh := serve(h, withCookies(navigation("POST", "/.auth/refresh"), cookies))
			if renewed := refresh.Code == http.StatusNoContent; renewed != tc.renew {
				t.Errorf("/.auth/refresh: %d", refresh.Code)
			}
		})
	}
}

// TestStorageAloneOpensNothing: the attack — under session_store storage,
// whoever can read Caddy's storage has the generated cookie key, seals a
// whole session of their making into a cookie, and is signed in. Such a
// cookie is accepted only for one session_lifetime after the store was
// switched (the sessions made before still work), then never.
func TestStorageAloneOpensNothing(t *testing.T) {
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	h, p, s := setup(t, func(h *Handler) { h.storage = storage })
	before := signedIn(t, h, p, s, nil)

	switched := newTestHandler(t, p, func(h *Handler) { h.storage, h.SessionStore = storage, "storage" })
	clock := time.Now()
	switched.now = func() time.Time { return clock }
	if res := serve(switched, withCookies(navigation("GET", "/"), before)); !res.reachedNext {
		t.Fatalf("a session made before the switch: %d", res.Code)
	}

	// The attacker's cookie: a whole session, sealed with the key.
	sess, _ := switched.sessions.open(t.Context(), before[0].Value)
	if sess == nil {
		t.Fatal("the session made before the switch does not open")
	}
	forged := *sess
	forged.ID, forged.Issued, forged.Expires = "forged", clock.Add(9*time.Hour).Unix(), clock.Add(30*time.Hour).Unix()
	cookie := &http.Cookie{Name: sessionCookie, Value: switched.sessions.encode(&forged)}
	clock = clock.Add(9 * time.Hour) // past one session_lifetime (8h) since the switch
	if res := serve(switched, withCookies(apiRequest(""), []*http.Cookie{cookie})); res.reachedNext || res.Code != http.StatusUnauthorized {
		t.Errorf("a whole-cookie session a session_lifetime after the switch: %d, reached the app %v", res.Code, res.reachedNext)
	}
	// A restart keeps the time of the switch.
	restarted := newTestHandler(t, p, func(h *Handler) { h.storage, h.SessionStore = storage, "storage" })
	restarted.now = switched.now
	if res := serve(restarted, withCookies(apiRequest(""), []*http.Cookie{cookie})); res.reachedNext {
		t.Error("after a restart, the forged cookie opens")
	}
}

// TestStoredSessionsPerUserAreBounded: the attack — a client replaying
// single sign-on made 60 sign-ins a second, each a record kept 8 hours.
// A user gets at most session.MaxPerMinute sign-ins a minute (then
// 429), and keeps at most session.MaxLive stored sessions: the oldest
// records go, and their cookies open nothing on an instance that did not
// cache them.
func TestStoredSessionsPerUserAreBounded(t *testing.T) {
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	stored := func(h *Handler) { h.storage, h.SessionStore = storage, "storage" }
	h, p, s := setup(t, stored)
	clock := time.Now()
	h.now = func() time.Time { return clock }

	var first []*http.Cookie
	for i := range session.MaxLive + 5 {
		if i > 0 && i%session.MaxPerMinute == 0 {
			// One more in the same minute is refused.
			state, nonce, fc := pendingFlow(t, h, "/")
			redeemWith(p, s.sign(t, goodClaims(p, nonce)))
			if res := serve(h, callbackRequest(state, fc, url.Values{"code": {"c"}})); res.Code != http.StatusTooManyRequests || res.Header().Get("Retry-After") == "" {
				t.Fatalf("sign-in %d in a minute: %d, want 429 with Retry-After", session.MaxPerMinute+1, res.Code)
			}
			clock = clock.Add(61 * time.Second)
		}
		cookies := signedIn(t, h, p, s, nil)
		if i == 0 {
			first = cookies
		}
		clock = clock.Add(time.Second)
	}
	if recs := storedSessions(t, storage); len(recs) != session.MaxLive {
		t.Errorf("%d stored sessions of one user, want %d", len(recs), session.MaxLive)
	}
	other := newTestHandler(t, p, stored)
	other.now = h.now
	if res := serve(other, withCookies(apiRequest(""), first)); res.reachedNext {
		t.Error("the oldest session, dropped past the bound, still opens")
	}
}
