package b2cauth_test

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/caddy-b2c/caddy-b2c/internal/testcaddy"
)

// scrape reads Caddy's metrics endpoint into "name{labels}" → value.
func scrape(t *testing.T, u string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	lines := bufio.NewScanner(resp.Body)
	for lines.Scan() {
		line := lines.Text()
		if !strings.HasPrefix(line, "caddy_b2c_auth_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, _ := strconv.ParseFloat(line[i+1:], 64)
		out[line[:i]] = v
	}
	return out
}

// TestMetrics: after sign-ins, a failed one, and bearer calls, Caddy's
// metrics endpoint shows the counts, under caddy_b2c_auth_, with no user
// or token in any label.
func TestMetrics(t *testing.T) {
	idp := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	base := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", testcaddy.FreePort(t))
	testcaddy.Start(t, testcaddy.Globals(t.TempDir())+fmt.Sprintf(`
%[1]s {
	b2c_emulator {
		client %[3]s {
			redirect_uri %[2]s/.auth/login/b2c/callback
		}
	}
}
%[2]s {
	b2c_auth {
		authority %[1]s/contoso.onmicrosoft.com
		policy B2C_1_susi
		client_id %[3]s
		scopes openid offline_access %[3]s
	}
	respond "hi {http.auth.user.name}"
}
%[4]s {
	metrics
}
`, idp, base, clientID, strings.TrimSuffix(metricsURL, "/metrics")))
	before := scrape(t, metricsURL)
	delta := func(after map[string]float64, key string) float64 { return after[key] - before[key] }

	b := testcaddy.NewBrowser(t)
	signInAs(t, b, base+"/", "ada@contoso.example")
	failing := testcaddy.NewBrowser(t)
	page := failing.Follow(base + "/")
	failing.FollowResponse(failing.Get(testcaddy.Link(t, page, "socialFailure")), "")
	failing.Get(base + "/.auth/login/b2c/callback?state=" + strings.Repeat("x", 43) + "&code=forged")

	token, _ := sessionTokens(t, b, base)
	for _, auth := range []string{"Bearer " + token, "Bearer " + token, "Bearer not.a.token"} {
		req, _ := http.NewRequest(http.MethodGet, base+"/api", nil)
		req.Header.Set("Authorization", auth)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}

	after := scrape(t, metricsURL)
	for key, want := range map[string]float64{
		`caddy_b2c_auth_sign_ins_total{policy="B2C_1_susi",result="success"}`: 1,
		`caddy_b2c_auth_sign_ins_total{policy="B2C_1_susi",result="error"}`:   1,
		`caddy_b2c_auth_callback_errors_total{code="AADB2C90273"}`:            1,
		`caddy_b2c_auth_callback_errors_total{code="state_mismatch"}`:         1,
		`caddy_b2c_auth_bearer_verifications_total{result="valid"}`:           2,
		`caddy_b2c_auth_bearer_verifications_total{result="invalid"}`:         1,
		`caddy_b2c_auth_requests_total{outcome="bearer"}`:                     2,
		`caddy_b2c_auth_requests_total{outcome="401"}`:                        1,
		`caddy_b2c_auth_provider_fetches_total{kind="token",result="ok"}`:     1,
	} {
		if got := delta(after, key); got != want {
			t.Errorf("%s went up by %v, want %v", key, got, want)
		}
	}
	if delta(after, `caddy_b2c_auth_requests_total{outcome="session"}`) < 1 || delta(after, `caddy_b2c_auth_requests_total{outcome="redirected"}`) < 2 {
		t.Errorf("request outcomes: %v", after)
	}
	if after[`caddy_b2c_auth_provider_fetch_seconds_count{kind="metadata"}`] < 1 {
		t.Error("no metadata fetch latency recorded")
	}
	for key := range after {
		if strings.Contains(key, "ada@") || strings.Contains(key, token[:20]) {
			t.Errorf("a metric label holds a user or token: %s", key)
		}
	}
}
