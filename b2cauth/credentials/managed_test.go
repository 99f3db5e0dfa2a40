package credentials

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// TestManagedIdentityRetriesWhatMicrosoftSaysToRetry: a 5xx, 404, 410 or
// 429 is asked again (three tries in all), another 4xx is not; a token is
// kept until 5 minutes before it expires; App Service's variables are
// used when both are set, with its header.
func TestManagedIdentityRetriesWhatMicrosoftSaysToRetry(t *testing.T) {
	for _, tc := range []struct {
		status, tries int
	}{{503, 3}, {500, 3}, {404, 3}, {410, 3}, {429, 3}, {400, 1}, {401, 1}} {
		var calls atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			w.WriteHeader(tc.status)
			_, _ = w.Write([]byte(`{"error":"x","error_description":"y"}`))
		}))
		t.Setenv("IDENTITY_ENDPOINT", srv.URL)
		t.Setenv("IDENTITY_HEADER", "h")
		if _, err := (&ManagedIdentity{ClientID: "c", firstWait: time.Millisecond}).Token(context.Background()); err == nil || int(calls.Load()) != tc.tries {
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
