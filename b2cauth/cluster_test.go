package b2cauth_test

import (
	"bufio"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-b2c/caddy-b2c/internal/testcaddy"

	// Caddy storage in Redis, as a cluster would share it.
	_ "github.com/pberkel/caddy-storage-redis"
)

// startRedis runs Debian's redis-server on a loopback port until the test
// ends and returns its address. Outside CI it skips when redis-server is
// missing; under CI=true it must run.
func startRedis(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	testcaddy.Require(t, "redis-server", "apt-get install redis-server", err == nil)
	addr := fmt.Sprintf("127.0.0.1:%d", testcaddy.FreePort(t))
	_, port, _ := strings.Cut(addr, ":")
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		if strings.Contains(lines.Text(), "Ready to accept connections") {
			go func() { // keep draining its log
				for lines.Scan() {
				}
			}()
			return addr
		}
	}
	t.Fatalf("redis-server did not start: %v", lines.Err())
	return ""
}

// TestTwoInstancesShareRedis runs two Caddy processes that share a real
// Redis through caddy-storage-redis, as a cluster behind a load balancer,
// with each session_store: a sign-in on one opens the other (with
// storage, a cookie of at most 512 bytes, and also after the other
// restarts), and a sign-out on one is honoured by the other within
// revocation_sync.
func TestTwoInstancesShareRedis(t *testing.T) {
	for _, store := range []string{"cookie", "storage"} {
		t.Run(store, func(t *testing.T) { twoInstancesShareRedis(t, store) })
	}
}

func twoInstancesShareRedis(t *testing.T, store string) {
	redis := startRedis(t)
	idp := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	one := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	two := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	globals := fmt.Sprintf("{\n\tadmin off\n\tstorage redis {\n\t\taddress %s\n\t}\n\tskip_install_trust\n\tpersist_config off\n\tlog default {\n\t\tlevel ERROR\n\t}\n}\n", redis)
	site := func(addr string) string {
		return fmt.Sprintf(`%s {
	b2c_auth {
		authority %s/contoso.onmicrosoft.com
		policy B2C_1_susi
		client_id %s
		revocation_sync 1s
		session_store %s
	}
	respond "name={http.auth.user.name}"
}
`, addr, idp, clientID, store)
	}
	emulator := fmt.Sprintf(`%s {
	b2c_emulator {
		client %s {
			redirect_uri %s/.auth/login/b2c/callback %s/.auth/login/b2c/callback
		}
	}
}
`, idp, clientID, one, two)
	testcaddy.Start(t, globals+emulator+site(one))
	stopTwo := startOtherCaddy(t, globals+site(two))

	b := testcaddy.NewBrowser(t)
	page := b.Follow(one + "/")
	landed := b.FollowResponse(b.Submit(page, map[string]string{"email": "ada@contoso.example", "password": "Passw0rd!"}), "")
	if !strings.Contains(landed.Body, "name=Ada Lovelace") {
		t.Fatalf("sign-in on the first instance: %d %q", landed.StatusCode, landed.Body)
	}
	if other := b.Get(two + "/"); other.StatusCode != 200 || !strings.Contains(other.Body, "name=Ada Lovelace") {
		t.Fatalf("the second instance does not open the session: %d %q", other.StatusCode, other.Body)
	}
	if store == "storage" {
		u, _ := url.Parse(one)
		size := 0
		for _, c := range b.Jar.Cookies(u) {
			size += len(c.Name) + 1 + len(c.Value) + 2
		}
		if size > 512 {
			t.Errorf("a stored session's cookies are %d bytes, want at most 512", size)
		}
		stopTwo()
		startOtherCaddy(t, globals+site(two))
		if other := b.Get(two + "/"); !strings.Contains(other.Body, "name=Ada Lovelace") {
			t.Fatalf("the second instance, restarted, does not open the session: %d %q", other.StatusCode, other.Body)
		}
	}

	// A copy of the cookie, then sign-out on the second instance: the first
	// refuses the copy within its revocation_sync (1s).
	replay := b.Copy(one)
	start := time.Now()
	b.Follow(two + "/.auth/logout")
	if !refusedWithin(replay, one+"/", 5*time.Second) {
		t.Fatal("the first instance still opens a session signed out on the second")
	}
	t.Logf("revocation seen by the other instance after %s", time.Since(start).Round(10*time.Millisecond))
}

// TestDockerComposeCaddyfile runs examples/docker/Caddyfile as
// compose.yaml does — two instances sharing Redis, settings from the
// environment — with local processes instead of containers: a session
// opens on both, reaches the upstream with the user, and a sign-out on one
// is honoured by the other.
func TestDockerComposeCaddyfile(t *testing.T) {
	example, err := os.ReadFile("../examples/docker/Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	redis := startRedis(t)
	idp := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	one := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	two := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	up := echoUpstream(t)
	for k, v := range map[string]string{
		"REDIS_ADDRESS": redis, "UPSTREAM": strings.TrimPrefix(up, "http://"),
		"B2C_AUTHORITY": idp + "/contoso.onmicrosoft.com", "B2C_CLIENT_ID": "web-app", "B2C_CLIENT_SECRET": "s3cret",
	} {
		t.Setenv(k, v)
	}
	instance := func(site string) string {
		return strings.NewReplacer(
			"{\n\tstorage redis {", "{\n\tadmin off\n\tpersist_config off\n\tskip_install_trust\n\tlog default {\n\t\tlevel ERROR\n\t}\n\tstorage redis {",
			"{$SITE_ADDRESS::80}", site,
		).Replace(string(example))
	}
	testcaddy.Start(t, instance(one)+fmt.Sprintf(`
%s {
	b2c_emulator {
		client web-app s3cret {
			redirect_uri %s/.auth/login/b2c/callback %s/.auth/login/b2c/callback
		}
	}
}
`, idp, one, two))
	startOtherCaddy(t, instance(two))

	b := testcaddy.NewBrowser(t)
	page := b.Follow(one + "/")
	seen := upstreamHeaders(t, b.FollowResponse(b.Submit(page, map[string]string{"email": "ada@contoso.example", "password": "Passw0rd!"}), ""))
	if seen.Get("X-User-Id") == "" {
		t.Fatalf("the upstream got no user: %v", seen)
	}
	if other := upstreamHeaders(t, b.Get(two+"/")); other.Get("X-User-Id") != seen.Get("X-User-Id") {
		t.Fatalf("the second instance does not open the session: %v", other)
	}
	replay := b.Copy(one)
	b.Follow(two + "/.auth/logout")
	if !refusedWithin(replay, one+"/", 10*time.Second) {
		t.Fatal("the first instance still opens a session signed out on the second")
	}
}

// TestRevokeThroughTheAdminAPI: an operator runs `caddy b2c revoke --user`
// against a running Caddy's admin API; the user's session, open on two
// instances sharing storage, is refused on both within revocation_sync.
func TestRevokeThroughTheAdminAPI(t *testing.T) {
	dir := t.TempDir()
	admin := fmt.Sprintf("127.0.0.1:%d", testcaddy.FreePort(t))
	idp := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	one := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	two := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	site := func(addr string) string {
		return fmt.Sprintf(`%s {
	b2c_auth {
		authority %s/contoso.onmicrosoft.com
		policy B2C_1_susi
		client_id %s
		revocation_sync 1s
	}
	respond "id={http.auth.user.id} session={http.auth.b2c.session_id}"
}
`, addr, idp, clientID)
	}
	testcaddy.Start(t, strings.Replace(testcaddy.Globals(dir), "admin off", "admin "+admin, 1)+fmt.Sprintf(`
%s {
	b2c_emulator {
		client %s {
			redirect_uri %s/.auth/login/b2c/callback
		}
		user ada@contoso.example Passw0rd! {
			object_id 6f1c2d3e-4a5b-4c6d-8e7f-901234567890
		}
	}
}
`, idp, clientID, one)+site(one))
	startOtherCaddy(t, testcaddy.Globals(dir)+site(two))

	b := testcaddy.NewBrowser(t)
	page := b.Follow(one + "/")
	if landed := b.FollowResponse(b.Submit(page, map[string]string{"email": "ada@contoso.example", "password": "Passw0rd!"}), ""); landed.StatusCode != 200 {
		t.Fatalf("sign-in: %d", landed.StatusCode)
	}
	other := b.Copy(two)
	if r := other.Get(two + "/"); r.StatusCode != 200 {
		t.Fatalf("the second instance does not open the session: %d", r.StatusCode)
	}

	revoke := func(args ...string) string {
		cmd := &cobra.Command{Use: "b2c"}
		caddycmd.Commands()["b2c"].CobraFunc(cmd)
		var out strings.Builder
		cmd.SetOut(&out)
		cmd.SetArgs(append([]string{"revoke", "--address", admin}, args...))
		if err := cmd.Execute(); err != nil {
			t.Fatalf("caddy b2c revoke %v: %v\n%s", args, err, out.String())
		}
		return out.String()
	}

	// One session, by the ID {http.auth.b2c.session_id} shows: the user's
	// other session stays.
	second := testcaddy.NewBrowser(t)
	landed := second.FollowResponse(second.Submit(second.Follow(one+"/"), map[string]string{"email": "ada@contoso.example", "password": "Passw0rd!"}), "")
	_, sessionID, _ := strings.Cut(landed.Body, "session=")
	if out := revoke("--session", sessionID); !strings.Contains(out, "signed out session") {
		t.Fatalf("revoke --session: %s", out)
	}
	if !refusedWithin(second, one+"/", 5*time.Second) {
		t.Error("the revoked session still opens")
	}
	if r := b.Get(one + "/"); r.StatusCode != 200 {
		t.Errorf("the user's other session was ended: %d", r.StatusCode)
	}

	if out := revoke("--user", "6f1c2d3e-4a5b-4c6d-8e7f-901234567890"); !strings.Contains(out, "signed out 6f1c2d3e-4a5b-4c6d-8e7f-901234567890 everywhere") {
		t.Fatalf("revoke --user: %s", out)
	}
	if !refusedWithin(b, one+"/", 5*time.Second) || !refusedWithin(other, two+"/", 5*time.Second) {
		t.Error("an instance still opens the revoked user's session")
	}
}

// TestTwoInstancesRenewOneSessionAtOnce: Entra ID does not revoke a
// refresh token when it is used, so two instances that renew the same
// session at the same moment (one browser, two tabs, a load balancer) both
// succeed, and the session goes on on both — in a cookie or in storage.
func TestTwoInstancesRenewOneSessionAtOnce(t *testing.T) {
	for _, store := range []string{"cookie", "storage"} {
		t.Run(store, func(t *testing.T) {
			idp := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
			one := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
			two := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
			globals := fmt.Sprintf("{\n\tadmin off\n\tstorage file_system %s\n\tskip_install_trust\n\tpersist_config off\n\tlog default {\n\t\tlevel ERROR\n\t}\n}\n", t.TempDir())
			site := func(addr string) string {
				return fmt.Sprintf(`%s {
	b2c_auth {
		issuer %s/contoso.onmicrosoft.com/v2.0
		client_id %s
		scopes openid profile offline_access
		session_store %s
	}
	respond "name={http.auth.user.name}"
}
`, addr, idp, clientID, store)
			}
			testcaddy.Start(t, globals+fmt.Sprintf(`%s {
	b2c_emulator {
		flavor entra_id
		client %s {
			redirect_uri %s/.auth/login/b2c/callback
		}
		user ada@contoso.example Passw0rd! {
			name "Ada Lovelace"
		}
	}
}
`, idp, clientID, one)+site(one))
			startOtherCaddy(t, globals+site(two))

			b := testcaddy.NewBrowser(t)
			if landed := signInAs(t, b, one+"/", "ada@contoso.example"); !strings.Contains(landed.Body, "name=Ada Lovelace") {
				t.Fatalf("sign-in: %d %q", landed.StatusCode, landed.Body)
			}
			tabs := map[string]*testcaddy.Browser{one: b.Copy(one), two: b.Copy(one)}
			var wg sync.WaitGroup
			start := make(chan struct{})
			results := make(chan string, 2)
			for origin, tab := range tabs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					res := tab.Do(http.MethodPost, origin+"/.auth/refresh", nil)
					results <- fmt.Sprintf("%s %d", origin, res.StatusCode)
				}()
			}
			close(start)
			wg.Wait()
			close(results)
			for r := range results {
				if !strings.HasSuffix(r, " 204") {
					t.Errorf("a renewal at the same moment failed: %s", r)
				}
			}
			for origin, tab := range tabs {
				for _, at := range []string{one, two} {
					if res := tab.Get(at + "/"); res.StatusCode != 200 || !strings.Contains(res.Body, "name=Ada Lovelace") {
						t.Errorf("the tab renewed on %s, on %s: %d %q", origin, at, res.StatusCode, res.Body)
					}
				}
				if res := tab.Do(http.MethodPost, origin+"/.auth/refresh", nil); res.StatusCode != http.StatusNoContent {
					t.Errorf("the tab renewed on %s cannot renew again: %d %q", origin, res.StatusCode, res.Body)
				}
			}
		})
	}
}
