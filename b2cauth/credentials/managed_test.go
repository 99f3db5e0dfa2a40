package credentials

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestManagedIdentityRetriesWhatMicrosoftSaysToRetry: a 5xx, 404 or 429
// is asked again (five tries in all), a 410 for 70 seconds, another 4xx
// not at all; a token is kept until 5 minutes before it expires; App
// Service's variables are used when both are set, with its header.
func TestManagedIdentityRetriesWhatMicrosoftSaysToRetry(t *testing.T) {
	for _, tc := range []struct {
		status, tries int
	}{{503, 5}, {500, 5}, {404, 5}, {410, 8}, {429, 5}, {400, 1}, {401, 1}} {
		var calls atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			w.WriteHeader(tc.status)
			_, _ = w.Write([]byte(`{"error":"x","error_description":"y"}`))
		}))
		t.Setenv("IDENTITY_ENDPOINT", srv.URL)
		t.Setenv("IDENTITY_HEADER", "h")
		if _, err := (&ManagedIdentity{ClientID: "c", unit: time.Millisecond}).Token(context.Background()); err == nil || int(calls.Load()) != tc.tries {
			t.Errorf("HTTP %d: asked %d times (%v), want %d", tc.status, calls.Load(), err, tc.tries)
		}
		srv.Close()
	}

	var calls atomic.Int32
	expiresIn := 3600
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("X-Identity-Header") != "h" || r.URL.Query().Get("api-version") != "2019-08-01" ||
			r.URL.Query().Get("resource") != TokenExchangeAudience || r.URL.Query().Get("client_id") != "c" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		on := strconv.FormatInt(time.Now().Add(time.Duration(expiresIn)*time.Second).Unix(), 10)
		_, _ = w.Write([]byte(`{"access_token":"a.b.c","expires_on":"` + on + `","token_type":"Bearer"}`))
	}))
	defer srv.Close()
	t.Setenv("IDENTITY_ENDPOINT", srv.URL)
	m := &ManagedIdentity{ClientID: "c"}
	for range 3 {
		if tok, err := m.Token(context.Background()); err != nil || tok != "a.b.c" {
			t.Fatalf("token: %q %v", tok, err)
		}
	}
	if calls.Load() != 1 {
		t.Errorf("a token with an hour to live was fetched %d times for three uses", calls.Load())
	}
	expiresIn = 240 // less than 5 minutes: fetched again every time
	m = &ManagedIdentity{ClientID: "c"}
	_, _ = m.Token(context.Background())
	_, _ = m.Token(context.Background())
	if calls.Load() != 3 {
		t.Errorf("a token that expires within 5 minutes was reused (%d fetches)", calls.Load())
	}
}

// TestRetryTableInSeconds: the waits Microsoft's guidance asks for, in
// real seconds: at least 1 s after a 5xx, doubling, five tries; a 410 asked
// again until 70 s have been waited; a 400 never.
func TestRetryTableInSeconds(t *testing.T) {
	walk := func(status int) (waits []time.Duration) {
		var waited time.Duration
		for try := 1; ; try++ {
			wait, again := retryWait(status, try, waited, time.Second)
			if !again {
				return waits
			}
			waits = append(waits, wait)
			waited += wait
		}
	}
	if w := walk(503); fmt.Sprint(w) != "[1s 2s 4s 8s]" {
		t.Errorf("503: waits %v, want [1s 2s 4s 8s] (five tries)", w)
	}
	w := walk(410)
	var total time.Duration
	for _, d := range w {
		total += d
	}
	if total > 70*time.Second || total < 60*time.Second || w[0] < time.Second {
		t.Errorf("410: waits %v (%s in all), want about 70 s", w, total)
	}
	if w := walk(400); len(w) != 0 {
		t.Errorf("400: waits %v, want none", w)
	}
	if w := walk(0); len(w) != 4 {
		t.Errorf("no answer: waits %v, want four", w)
	}
}

// TestTheCloudsAudience: the token is asked for the audience given (a
// national cloud's), else the global one.
func TestTheCloudsAudience(t *testing.T) {
	var asked atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Store(r.URL.Query().Get("resource"))
		_, _ = w.Write([]byte(`{"access_token":"a.b.c","expires_in":"3600"}`))
	}))
	defer srv.Close()
	t.Setenv("IDENTITY_ENDPOINT", srv.URL)
	t.Setenv("IDENTITY_HEADER", "h")
	for audience, want := range map[string]string{"": TokenExchangeAudience, "api://AzureADTokenExchangeUSGov": "api://AzureADTokenExchangeUSGov"} {
		if _, err := (&ManagedIdentity{ClientID: "c", Audience: audience}).Token(context.Background()); err != nil || asked.Load() != want {
			t.Errorf("audience %q: asked for %v (%v), want %s", audience, asked.Load(), err, want)
		}
	}
}

// TestUnsupportedEnvironments: Service Fabric and Azure Arc are told apart
// from App Service and VMs.
func TestUnsupportedEnvironments(t *testing.T) {
	t.Setenv("IDENTITY_ENDPOINT", "http://localhost:40342/metadata/identity/oauth2/token")
	t.Setenv("IDENTITY_HEADER", "")
	t.Setenv("IMDS_ENDPOINT", "http://localhost:40342")
	if got := UnsupportedEnvironment(); !strings.Contains(got, "Azure Arc") {
		t.Errorf("Arc: %q", got)
	}
	t.Setenv("IMDS_ENDPOINT", "")
	t.Setenv("IDENTITY_HEADER", "h")
	t.Setenv("IDENTITY_SERVER_THUMBPRINT", "AB12")
	if got := UnsupportedEnvironment(); !strings.Contains(got, "Service Fabric") {
		t.Errorf("Service Fabric: %q", got)
	}
	t.Setenv("IDENTITY_SERVER_THUMBPRINT", "")
	if got := UnsupportedEnvironment(); got != "" {
		t.Errorf("App Service: %q", got)
	}
}
