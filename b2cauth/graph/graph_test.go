package graph

import (
	"github.com/caddy-b2c/caddy-b2c/b2cauth/credentials"

	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
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

func TestMemberGroupsFollowsPagingAndReusesItsToken(t *testing.T) {
	c, tokens := fakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("$skiptoken") == "" {
			fmt.Fprintf(w, `{"value":[{"id":"g1"},{"id":"g2"}],"@odata.nextLink":"%s?$skiptoken=2"}`, "http://"+r.Host+r.URL.Path)
			return
		}
		fmt.Fprint(w, `{"value":[{"id":"g3"}]}`)
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

func TestMemberGroupsHonoursRetryAfter(t *testing.T) {
	calls := new(atomic.Int32)
	c, _ := fakeGraph(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		fmt.Fprint(w, `{"value":[{"id":"g1"}]}`)
	})
	start := time.Now()
	ids, err := c.MemberGroups(context.Background(), "tenant", "user")
	if err != nil || len(ids) != 1 || time.Since(start) < time.Second {
		t.Errorf("after a 429 with Retry-After 1: %v %v, waited %s", ids, err, time.Since(start))
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
	if !errors.As(err, &ge) || ge.Status != 403 || !strings.Contains(ge.Hint, "GroupMember.Read.All") {
		t.Errorf("403: %v", err)
	}
	c.Credential = credentials.Secret("wrong")
	c.tokens = nil
	if _, err := c.MemberGroups(context.Background(), "tenant", "user"); !errors.As(err, &ge) || ge.Code != "invalid_client" || !strings.Contains(ge.Hint, "client_secret") {
		t.Errorf("a wrong secret: %v", err)
	}
}
