package b2cauth

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// TestRequestStatePrintsNothing: the attack is an operator's harmless-looking
// {http.vars.b2c_auth.request} in a log format or a response: Caddy prints a
// variable it does not know with %+v, which would write the client's Cookie
// header — the session cookie, a credential — where logs go.
func TestRequestStatePrintsNothing(t *testing.T) {
	h, p, s := setup(t, nil)
	req := withCookies(navigation("GET", "/page"), signedIn(t, h, p, s, nil))
	_, session, _ := strings.Cut(req.Header.Get("Cookie"), "=")
	var printed []string
	err := h.ServeHTTP(&discard{h: http.Header{}}, asCaddyGivesIt(req), caddyhttp.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) error {
		v := caddyhttp.GetVar(r.Context(), requestStateVar)
		printed = append(printed, caddy.ToString(v), fmt.Sprintf("%v", v), fmt.Sprintf("%+v", v))
		return nil
	}))
	if err != nil || len(printed) == 0 || len(session) < 40 {
		t.Fatalf("the signed-in request did not reach the next handler: %v", err)
	}
	for _, out := range printed {
		if strings.Contains(out, session[:40]) {
			t.Errorf("the request state prints the session cookie: %.80s…", out)
		}
	}
}
