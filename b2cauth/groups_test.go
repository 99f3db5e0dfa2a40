package b2cauth

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/graph"
)

const staffGroupID = "0f4c2d5e-0000-4000-8000-00000000a11a"

// fakeGraphService is a token endpoint and a Graph whose answer a test
// switches: 200 with the Staff group, or a status; it counts the calls.
type fakeGraphService struct {
	status      atomic.Int32
	calls       atomic.Int32
	tokenFetchs atomic.Int32
}

func newFakeGraph(t *testing.T) (*fakeGraphService, string) {
	g := &fakeGraphService{}
	g.status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/oauth2/v2.0/token") {
			g.tokenFetchs.Add(1)
			fmt.Fprint(w, `{"token_type":"Bearer","expires_in":3599,"access_token":"graph-token"}`)
			return
		}
		g.calls.Add(1)
		if s := int(g.status.Load()); s != http.StatusOK {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(s)
			fmt.Fprint(w, `{"error":{"code":"Authorization_RequestDenied"}}`)
			return
		}
		// the answer of checkMemberGroups, asked about the Staff group
		fmt.Fprintf(w, `{"value":[%q]}`, staffGroupID)
	}))
	t.Cleanup(srv.Close)
	return g, srv.URL
}

// groupsHandler is a B2C site whose rule admits the Staff group, read
// from the fake Graph, on a clock the test moves.
func groupsHandler(t *testing.T, graphURL string, clock *time.Time) (*Handler, *hostile, signer) {
	return setup(t, func(h *Handler) {
		h.ClientSecret, h.Groups = "s3cret", "graph"
		h.GraphEndpoint, h.GraphLogin = graphURL, graphURL
		h.Allow = []Rule{{Claim: "groups", Patterns: []string{staffGroupID}}}
		h.now = func() time.Time { return *clock }
	})
}

// TestGroupsArriveWhenGraphRecovers: a user who signed in while Graph
// refused is told the site cannot check their access (503), without a
// Graph call per request; once Graph answers again, the same session gets
// its groups and gets in — no new sign-in, no renewal.
func TestGroupsArriveWhenGraphRecovers(t *testing.T) {
	g, graphURL := newFakeGraph(t)
	clock := time.Now()
	h, p, s := groupsHandler(t, graphURL, &clock)
	g.status.Store(http.StatusForbidden)
	cookies := signedIn(t, h, p, s, nil)
	if g.calls.Load() != 1 {
		t.Fatalf("sign-in made %d Graph calls, want 1", g.calls.Load())
	}
	for range 50 {
		if res := serve(h, withCookies(navigation("GET", "/page"), cookies)); res.Code != http.StatusServiceUnavailable {
			t.Fatalf("while Graph refuses: %d", res.Code)
		}
	}
	if g.calls.Load() != 1 {
		t.Errorf("50 requests while Graph's refusal stands made %d more Graph calls", g.calls.Load()-1)
	}

	g.status.Store(http.StatusOK)
	clock = clock.Add(graph.RefusedFor + time.Second)
	res := serve(h, withCookies(navigation("GET", "/page"), cookies))
	if !res.reachedNext || res.placeholder("groups") != staffGroupID {
		t.Fatalf("after Graph recovered: %d, groups %q", res.Code, res.placeholder("groups"))
	}
	renewed := sessionCookies(res)
	if len(renewed) == 0 {
		t.Fatal("the session with its groups was not kept")
	}
	calls := g.calls.Load()
	if res := serve(h, withCookies(navigation("GET", "/page"), renewed)); !res.reachedNext || g.calls.Load() != calls {
		t.Errorf("the next request: %d, %d more Graph calls", res.Code, g.calls.Load()-calls)
	}
}

// TestOverageBearerCannotMultiplyGraphCalls: the attack — one bearer token
// with the groups overage indicator, Graph answering 429 Retry-After: 0:
// one request made 204 Graph calls in 10 s, and each further request more.
// Now a throttled lookup asks twice, and requests after it ask nothing
// until graph.ThrottledFor has passed.
func TestOverageBearerCannotMultiplyGraphCalls(t *testing.T) {
	g, graphURL := newFakeGraph(t)
	clock := time.Now()
	h, p, s := groupsHandler(t, graphURL, &clock)
	g.status.Store(http.StatusTooManyRequests)
	token := s.sign(t, accessClaims(p))
	for range 20 {
		if res := serve(h, apiRequest("Bearer "+token)); res.Code != http.StatusServiceUnavailable {
			t.Fatalf("a throttled Graph: %d", res.Code)
		}
	}
	if g.calls.Load() != 2 || g.tokenFetchs.Load() != 1 {
		t.Errorf("20 requests: %d Graph calls and %d token fetches, want 2 and 1", g.calls.Load(), g.tokenFetchs.Load())
	}
	clock = clock.Add(graph.ThrottledFor + time.Second)
	g.status.Store(http.StatusOK)
	if res := serve(h, apiRequest("Bearer "+token)); !res.reachedNext || res.placeholder("groups") != staffGroupID {
		t.Errorf("after the throttling: %d groups %q", res.Code, res.placeholder("groups"))
	}
}
