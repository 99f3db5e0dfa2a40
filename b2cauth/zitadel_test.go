package b2cauth_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"

	"github.com/caddy-b2c/caddy-b2c/internal/testcaddy"
)

// TestUserInfoClaimsFromZitadel signs in, in issuer mode, against
// zitadel/oidc's example OpenID provider, written by someone else. Its ID
// token has no email or name: they come from its UserInfo endpoint, which
// b2c_auth reads at sign-in, checks (same sub) and keeps in the session.
func TestUserInfoClaimsFromZitadel(t *testing.T) {
	for _, mode := range []string{"query", "form_post"} {
		t.Run(mode, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			issuer := fmt.Sprintf("http://127.0.0.1:%d/", l.Addr().(*net.TCPAddr).Port)
			base := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
			client := "caddy-web-" + mode
			storage.RegisterClients(storage.WebClient(client, "s3cret", base+"/.auth/login/b2c/callback"))
			op := exampleop.SetupServer(issuer, storage.NewStorage(storage.NewUserStore(issuer)), slog.New(slog.DiscardHandler), false)
			srv := &http.Server{Handler: op}
			go func() { _ = srv.Serve(l) }()
			t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })

			testcaddy.Start(t, testcaddy.Globals(t.TempDir())+fmt.Sprintf(`
%s {
	b2c_auth {
		issuer %s
		client_id %s
		client_secret s3cret
		response_mode %s
	}
	respond "id={http.auth.user.id} email={http.auth.user.email} name={http.auth.user.name}"
}
`, base, strings.TrimSuffix(issuer, "/"), client, mode))
			b := testcaddy.NewBrowser(t)
			page := b.Follow(base + "/x")
			if !strings.Contains(page.Body, `name="username"`) {
				t.Fatalf("not zitadel's login page: %d at %s\n%s", page.StatusCode, page.Request.URL, page.Body)
			}
			landed := b.FollowResponse(b.Submit(page, map[string]string{"username": "test-user2", "password": "verysecure"}), "")
			if landed.StatusCode != 200 || landed.Request.URL.Path != "/x" || landed.Body != "id=id2 email=test-user2@zitadel.ch name=Test User2" {
				t.Errorf("after sign-in: %d %s %q", landed.StatusCode, landed.Request.URL, landed.Body)
			}
			// The claims are kept in the session: later requests have them too.
			if again := b.Get(base + "/y"); again.Body != "id=id2 email=test-user2@zitadel.ch name=Test User2" {
				t.Errorf("a later request: %q", again.Body)
			}
		})
	}
}
