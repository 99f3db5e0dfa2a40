package b2cemulator

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Fuzz targets for the emulator's endpoints and its directive: whatever a
// client sends gets an answer below 500, never a panic.

func fuzzEmulator(f *testing.F) *Emulator {
	e := &Emulator{Clients: []Client{
		{ClientID: "web", Secret: "s3cret", RedirectURIs: []string{"http://localhost/cb"}},
		{ClientID: "spa", Platform: "spa", RedirectURIs: []string{"http://localhost/spa"}},
	}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	f.Cleanup(cancel)
	if err := e.Provision(ctx); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = e.Cleanup() })
	return e
}

func fuzzServe(t *testing.T, e *Emulator, req *http.Request) {
	req.RemoteAddr, req.Host = "127.0.0.1:40000", "localhost"
	w := httptest.NewRecorder()
	err := e.ServeHTTP(w, req, caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(http.StatusNotFound)
		return nil
	}))
	code := w.Code
	if he, ok := err.(caddyhttp.HandlerError); ok {
		code = he.StatusCode
	} else if err != nil {
		code = 500
	}
	if code >= 500 {
		t.Fatalf("%s %s: %d %v", req.Method, req.URL, code, err)
	}
}

func FuzzAuthorize(f *testing.F) {
	e := fuzzEmulator(f)
	good := url.Values{"client_id": {"web"}, "redirect_uri": {"http://localhost/cb"}, "response_type": {"code"}, "scope": {"openid offline_access"}, "state": {"s"}, "nonce": {"n"}, "code_challenge": {"abc"}, "code_challenge_method": {"S256"}}.Encode()
	f.Add("GET", "/contoso.onmicrosoft.com/B2C_1_susi/oauth2/v2.0/authorize", good, "")
	f.Add("POST", "/contoso.onmicrosoft.com/B2C_1_susi/oauth2/v2.0/authorize", "", "request="+url.QueryEscape(good)+"&action=signin&email=ada%40contoso.example&password=Passw0rd%21")
	f.Add("GET", "/contoso.onmicrosoft.com/oauth2/v2.0/authorize", "p=B2C_1_reset&"+good+"&emulator_action=forgot", "")
	f.Add("GET", "/tfp/contoso.onmicrosoft.com/B2C_1_edit/oauth2/v2.0/logout", "post_logout_redirect_uri=http://x/&id_token_hint=a.b.c&state=z", "")
	f.Fuzz(func(t *testing.T, method, path, query, body string) {
		if method != "GET" && method != "POST" {
			method = "DELETE"
		}
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, "?# \r\n") {
			path = "/contoso.onmicrosoft.com/B2C_1_susi/oauth2/v2.0/authorize"
		}
		req := httptest.NewRequest(method, "http://127.0.0.1/", strings.NewReader(body))
		req.URL.Path, req.URL.RawQuery = path, query // as the server would have them, escapes and all
		if method == "POST" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		fuzzServe(t, e, req)
	})
}

func FuzzToken(f *testing.F) {
	e := fuzzEmulator(f)
	f.Add("grant_type=authorization_code&code=x&client_id=web&client_secret=s3cret&redirect_uri=http%3A%2F%2Flocalhost%2Fcb&code_verifier=v", "")
	f.Add("grant_type=refresh_token&refresh_token=r&client_id=spa", "http://localhost")
	f.Add("client_id=nobody", "")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, body, origin string) {
		req := httptest.NewRequest("POST", "http://127.0.0.1/contoso.onmicrosoft.com/B2C_1_susi/oauth2/v2.0/token", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" && !strings.ContainsAny(origin, "\r\n") {
			req.Header.Set("Origin", origin)
		}
		fuzzServe(t, e, req)
	})
}

func FuzzEmulatorCaddyfile(f *testing.F) {
	f.Add("b2c_emulator {\n client a s { redirect_uri http://x/cb\n platform web }\n user a@b p { claim x y }\n policy_claims B2C_1_susi oid\n}")
	f.Add("b2c_emulator {\n flavor entra_id\n multi_tenant\n api https://x/y { scopes a }\n}")
	f.Add("b2c_emulator x")
	f.Fuzz(func(t *testing.T, input string) {
		tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
		if err != nil {
			return // not a Caddyfile at all: Caddy's lexer says so before any directive sees it
		}
		var e Emulator
		_ = e.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens))
	})
}
