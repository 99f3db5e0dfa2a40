package graph

import (
	"github.com/caddy-b2c/caddy-b2c/b2cauth/credentials"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeGraph is a token endpoint and a Graph that answer as told.
func fakeGraph(t *testing.T, graph http.HandlerFunc) (*Client, *atomic.Int32) {
	tokens := new(atomic.Int32)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token") {
			tokens.Add(1)
			_ = r.ParseForm()
			if r.PostForm.Get("client_secret") != "s3cret" {
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprint(w, `{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}`)
				return
			}
			fmt.Fprint(w, `{"token_type":"Bearer","expires_in":3599,"access_token":"graph-token"}`)
			return
		}
		if r.Header.Get("Authorization") != "Bearer graph-token" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":{"code":"InvalidAuthenticationToken","message":"no"}}`)
			return
		}
		graph(w, r)
	}))
	t.Cleanup(srv.Close)
	return &Client{Endpoint: srv.URL, Login: srv.URL, ClientID: "app", Credential: credentials.Secret("s3cret"), HTTP: srv.Client(), MaxWait: 3 * time.Second}, tokens
}

// TestSecurityGroupsThroughGetMemberGroups: by default a lookup is the
// call every tenant answers, B2C's included (no OData cast, an advanced
// query B2C does not offer): POST getMemberGroups with securityEnabledOnly.
func TestSecurityGroupsThroughGetMemberGroups(t *testing.T) {
	c, tokens := fakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/v1.0/users/user/getMemberGroups" || string(body) != `{"securityEnabledOnly":true}` || r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"error":{"code":"Request_UnsupportedQuery","message":"%s %s %s"}}`, r.Method, r.URL.Path, body)
			return
		}
		fmt.Fprint(w, `{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#Collection(Edm.String)","value":["g1","g2","g3"]}`)
	})
	for range 2 {
		ids, err := c.MemberGroups(context.Background(), "tenant", "user")
		if err != nil || strings.Join(ids, ",") != "g1,g2,g3" {
			t.Fatalf("groups %v, %v", ids, err)
		}
	}
	if tokens.Load() != 1 {
		t.Errorf("%d Graph tokens for two lookups, want 1 (cached)", tokens.Load())
	}
}

// TestAllGroupTypesThroughTransitiveMemberOf: with AllTypes, the lookup
// pages through transitiveMemberOf without a cast and keeps the groups,
// not the directory roles or administrative units beside them.
func TestAllGroupTypesThroughTransitiveMemberOf(t *testing.T) {
	c, _ := fakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/v1.0/users/user/transitiveMemberOf" {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":{"code":"Request_UnsupportedQuery","message":"an OData cast is an advanced query"}}`)
			return
		}
		if r.URL.Query().Get("$skiptoken") == "" {
			fmt.Fprintf(w, `{"value":[{"@odata.type":"#microsoft.graph.group","id":"g1"},{"@odata.type":"#microsoft.graph.directoryRole","id":"r1"},{"@odata.type":"#microsoft.graph.group","id":"g2"}],"@odata.nextLink":"%s?$skiptoken=2"}`, "http://"+r.Host+r.URL.Path)
			return
		}
		fmt.Fprint(w, `{"value":[{"@odata.type":"#microsoft.graph.administrativeUnit","id":"a1"},{"@odata.type":"#microsoft.graph.group","id":"g3"}]}`)
	})
	c.AllTypes = true
	ids, err := c.MemberGroups(context.Background(), "tenant", "user")
	if err != nil || strings.Join(ids, ",") != "g1,g2,g3" {
		t.Fatalf("groups %v, %v; want g1,g2,g3 (groups only, both pages)", ids, err)
	}
}

// TestNamedGroupsThroughCheckMemberGroups: with Named, a lookup asks about
// those groups only, 20 a call, and keeps only what it asked about.
func TestNamedGroupsThroughCheckMemberGroups(t *testing.T) {
	var asked [][]string
	var mu sync.Mutex
	c, _ := fakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			GroupIDs []string `json:"groupIds"`
		}
		if r.Method != http.MethodPost || r.URL.Path != "/v1.0/users/user/checkMemberGroups" || json.NewDecoder(r.Body).Decode(&body) != nil || len(body.GroupIDs) > 20 {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":{"code":"Request_BadRequest","message":"no"}}`)
			return
		}
		mu.Lock()
		asked = append(asked, body.GroupIDs)
		mu.Unlock()
		var member []string
		for _, id := range body.GroupIDs {
			if id == "n3" || id == "n22" {
				member = append(member, id)
			}
		}
		member = append(member, "not-asked")
		out, _ := json.Marshal(map[string][]string{"value": member})
		w.Write(out)
	})
	for i := range 25 {
		c.Named = append(c.Named, fmt.Sprint("n", i))
	}
	ids, err := c.MemberGroups(context.Background(), "tenant", "user")
	if err != nil || strings.Join(ids, ",") != "n3,n22" {
		t.Fatalf("groups %v, %v; want n3,n22", ids, err)
	}
	if len(asked) != 2 || len(asked[0]) != 20 || len(asked[1]) != 5 {
		t.Errorf("calls %v, want 20 then 5 groups", asked)
	}
}

// TestMemberGroupsHonoursRetryAfter: after a 429, the lookup asks again
// once, and gets the groups.
func TestMemberGroupsHonoursRetryAfter(t *testing.T) {
	calls := new(atomic.Int32)
	c, _ := fakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		fmt.Fprint(w, `{"value":["g1"]}`)
	})
	ids, err := c.MemberGroups(context.Background(), "tenant", "user")
	if err != nil || len(ids) != 1 || calls.Load() != 2 {
		t.Errorf("after a 429: %v %v, %d calls", ids, err, calls.Load())
	}
}

// waitFor polls a counter until it reaches n (the callers are in place),
// failing after a generous bound; it measures no time.
func waitFor(t *testing.T, what string, counter func() int64, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for counter() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d, want %d", what, counter(), n)
		}
		runtime.Gosched()
	}
}

// TestOneLookupPerUser: the attack — 20 concurrent requests with one
// bearer token made 20 token fetches and 19 lookups. Now they wait for one.
func TestOneLookupPerUser(t *testing.T) {
	release := make(chan struct{})
	calls := new(atomic.Int32)
	c, tokens := fakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		<-release
		fmt.Fprint(w, `{"value":["g1"]}`)
	})
	var wg sync.WaitGroup
	results := make(chan string, 20)
	for range 20 {
		wg.Go(func() {
			ids, err := c.MemberGroups(context.Background(), "tenant", "user")
			results <- fmt.Sprint(ids, err)
		})
	}
	waitFor(t, "callers waiting", c.joined.Load, 20)
	close(release)
	wg.Wait()
	close(results)
	for r := range results {
		if r != "[g1] <nil>" {
			t.Errorf("a caller got %s", r)
		}
	}
	if calls.Load() != 1 || tokens.Load() != 1 {
		t.Errorf("20 concurrent callers: %d lookups and %d token fetches, want 1 and 1", calls.Load(), tokens.Load())
	}
}

// TestLookupsInFlightAreBounded: many users at once get at most
// MaxLookups lookups in flight; the others wait their turn.
func TestLookupsInFlightAreBounded(t *testing.T) {
	release := make(chan struct{})
	inFlight, most := new(atomic.Int64), new(atomic.Int64)
	c, _ := fakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-release
		inFlight.Add(-1)
		fmt.Fprint(w, `{"value":[]}`)
	})
	c.MaxWait = time.Minute
	var wg sync.WaitGroup
	for i := range MaxLookups + 4 {
		wg.Go(func() { _, _ = c.MemberGroups(context.Background(), "tenant", fmt.Sprint("user-", i)) })
	}
	waitFor(t, "callers", c.joined.Load, MaxLookups+4)
	waitFor(t, "lookups in flight", inFlight.Load, MaxLookups)
	close(release)
	wg.Wait()
	if most.Load() != MaxLookups {
		t.Errorf("%d lookups in flight at once, want %d", most.Load(), MaxLookups)
	}
}

// TestFailuresAreRemembered: the attack — with Graph answering 429
// Retry-After: 0, one request made 204 calls in 10 s, and a refusal (403)
// was asked again by every request. Now a throttled lookup asks twice and
// is then not asked again for ThrottledFor (or a longer Retry-After); a
// refusal for RefusedFor.
func TestFailuresAreRemembered(t *testing.T) {
	status, retry := new(atomic.Int32), new(atomic.Value)
	calls := new(atomic.Int32)
	c, _ := fakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Retry-After", retry.Load().(string))
		w.WriteHeader(int(status.Load()))
		fmt.Fprint(w, `{"error":{"code":"Authorization_RequestDenied"}}`)
	})
	clock := time.Now()
	c.Now = func() time.Time { return clock }
	ask := func() error { _, err := c.MemberGroups(context.Background(), "tenant", "user"); return err }

	status.Store(http.StatusTooManyRequests)
	retry.Store("0")
	if err := ask(); err == nil || calls.Load() != 2 {
		t.Fatalf("throttled: %v after %d calls, want an error after 2", err, calls.Load())
	}
	for range 100 {
		if ask() == nil {
			t.Fatal("a remembered failure answered with groups")
		}
	}
	clock = clock.Add(ThrottledFor - time.Second)
	_ = ask()
	if calls.Load() != 2 {
		t.Errorf("%d calls within ThrottledFor of a 429 with Retry-After 0, want 2", calls.Load())
	}
	clock = clock.Add(2 * time.Second)
	retry.Store("120")
	_ = ask()
	if calls.Load() != 3 {
		t.Errorf("after ThrottledFor: %d calls, want 3 (asked again, and not again within the lookup's time)", calls.Load())
	}
	clock = clock.Add(100 * time.Second)
	_ = ask()
	if calls.Load() != 3 {
		t.Errorf("within Retry-After: 120: %d calls, want 3", calls.Load())
	}

	clock = clock.Add(time.Hour)
	status.Store(http.StatusForbidden)
	var ge *Error
	if err := ask(); !errors.As(err, &ge) || ge.Status != 403 || calls.Load() != 4 {
		t.Fatalf("a refusal: %v after %d calls", err, calls.Load())
	}
	clock = clock.Add(RefusedFor - time.Second)
	if err := ask(); !errors.As(err, &ge) || ge.Status != 403 || calls.Load() != 4 {
		t.Errorf("a remembered refusal: %v, %d calls, want the 403 and no call", err, calls.Load())
	}
	clock = clock.Add(2 * time.Second)
	_ = ask()
	if calls.Load() != 5 {
		t.Errorf("after RefusedFor: %d calls, want 5", calls.Load())
	}
}

// TestNextLinkStaysOnGraph: the attack — a hostile @odata.nextLink on
// another host received the app's Graph token. It is not followed.
func TestNextLinkStaysOnGraph(t *testing.T) {
	stolen := new(atomic.Int32)
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stolen.Add(1)
		fmt.Fprint(w, `{"value":[]}`)
	}))
	t.Cleanup(elsewhere.Close)
	for _, next := range []string{elsewhere.URL + "/v1.0/next", strings.Replace(elsewhere.URL, "http://", "https://", 1) + "/v1.0/next"} {
		c, _ := fakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, `{"value":[{"@odata.type":"#microsoft.graph.group","id":"g1"}],"@odata.nextLink":%q}`, next)
		})
		c.AllTypes = true
		if _, err := c.MemberGroups(context.Background(), "tenant", "user"); err == nil {
			t.Errorf("a nextLink to %s was accepted", next)
		}
	}
	if stolen.Load() != 0 {
		t.Errorf("another host got %d requests with the Graph token", stolen.Load())
	}
}

// TestMemberGroupsReadsAtMostMaxGroups: the attack — 60,000 IDs a page
// grew the server from 52 to 413 MB. A lookup reads at most MaxGroups IDs,
// and a page over maxPage bytes not at all.
func TestMemberGroupsReadsAtMostMaxGroups(t *testing.T) {
	pages := new(atomic.Int32)
	page := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, `{"@odata.type":"#microsoft.graph.group","id":"g%d"},`, i)
		}
		return strings.TrimSuffix(b.String(), ",")
	}
	c, _ := fakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
		pages.Add(1)
		fmt.Fprintf(w, `{"value":[%s],"@odata.nextLink":"http://%s/v1.0/more"}`, page(3000), r.Host)
	})
	c.AllTypes = true
	ids, err := c.MemberGroups(context.Background(), "tenant", "user")
	if err != nil || len(ids) != MaxGroups || pages.Load() != 2 {
		t.Errorf("%d IDs, %d pages, %v; want %d IDs from 2 pages", len(ids), pages.Load(), err, MaxGroups)
	}
	huge, _ := fakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"value":[%s]}`, page(60000))
	})
	if _, err := huge.MemberGroups(context.Background(), "tenant", "user"); err == nil {
		t.Error("a page of 60,000 IDs was read")
	}
	// getMemberGroups answers at most 11,000 IDs, else this refusal: the
	// error says what to do instead.
	tooMany, _ := fakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":{"code":"Directory_ResultSizeLimitExceeded","message":"Request Size Limit Exceeded."}}`)
	})
	var ge *Error
	if _, err := tooMany.MemberGroups(context.Background(), "tenant", "user"); !errors.As(err, &ge) || ge.Status != 400 || !strings.Contains(ge.Hint, "11,000") || !strings.Contains(ge.Hint, "graph_groups all") {
		t.Errorf("over 11,000 groups: %v", err)
	}
}

func TestMemberGroupsIsBounded(t *testing.T) {
	c, _ := fakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "120") // throttled for longer than the lookup may take
		w.WriteHeader(http.StatusTooManyRequests)
	})
	c.MaxWait = 300 * time.Millisecond
	start := time.Now()
	if _, err := c.MemberGroups(context.Background(), "tenant", "user"); err == nil || time.Since(start) > 2*time.Second {
		t.Errorf("a throttled Graph: %v after %s, want an error within the bound", err, time.Since(start))
	}
	slow, _ := fakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	})
	slow.MaxWait = 300 * time.Millisecond
	start = time.Now()
	if _, err := slow.MemberGroups(context.Background(), "tenant", "user"); err == nil || time.Since(start) > 2*time.Second {
		t.Errorf("a slow Graph: %v after %s", err, time.Since(start))
	}
}

func TestRefusalsSayWhatToFix(t *testing.T) {
	c, _ := fakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation."}}`)
	})
	_, err := c.MemberGroups(context.Background(), "tenant", "user")
	var ge *Error
	if !errors.As(err, &ge) || ge.Status != 403 || !strings.Contains(ge.Hint, "User.Read.All and GroupMember.Read.All") {
		t.Errorf("403: %v", err)
	}
	c.Credential = credentials.Secret("wrong")
	c.tokens = nil
	if _, err := c.MemberGroups(context.Background(), "tenant", "another-user"); !errors.As(err, &ge) || ge.Code != "invalid_client" || !strings.Contains(ge.Hint, "client_secret") {
		t.Errorf("a wrong secret: %v", err)
	}
}
