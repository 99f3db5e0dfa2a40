// Command loadtest compares, in one run, the same Caddy with and without
// b2c_auth: two sites in one process answer the same `respond`, one of them
// behind b2c_auth with a signed-in session (and, third, a bearer token). It
// sends the same bounded load to each, in alternating rounds so that the
// noise of a shared machine falls on both, and reports throughput ratios.
//
//	go run ./examples/loadtest [-requests 20000] [-concurrency 8] [-rounds 3]
//
// With -soak <duration> it runs a soak instead: for that long, signed-in
// traffic mixed with floods of bogus callbacks, distinct garbage session
// cookies, distinct forged bearer tokens and sign-ins started and
// abandoned; it samples the process's RSS and goroutines and fails if they
// grow past a bound or any answer is a 5xx.
//
//	go run ./examples/loadtest -soak 5m [-rss-growth-mb 64]
//
// With -scale <n> it measures the sign-out state instead, with n recorded
// sign-ins and n sign-outs, on file storage or on a Redis it starts
// (Debian's redis-server): the cost of a sign-out, of a front-channel
// request, of a sync pass, the idle CPU, the RSS, and the signed-in latency
// under a front-channel flood, before and after.
//
//	go run ./examples/loadtest -scale 100000 [-storage file|redis] [-idle 30s]
//
// Everything runs on 127.0.0.1; the load is bounded in count and time.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-b2c/caddy-b2c/internal/testcaddy"
)

// fatal lets the load test drive testcaddy's browser.
type fatal struct{}

func (fatal) Helper()                      {}
func (fatal) Fatal(args ...any)            { log.Fatal(args...) }
func (fatal) Fatalf(f string, args ...any) { log.Fatalf(f, args...) }

func main() {
	requests := flag.Int("requests", 20000, "requests per site per round")
	concurrency := flag.Int("concurrency", 8, "concurrent clients")
	rounds := flag.Int("rounds", 3, "alternating rounds")
	soakFor := flag.Duration("soak", 0, "run a soak for this long instead of the comparison")
	rssGrowth := flag.Int("rss-growth-mb", 64, "soak: the most the RSS may grow after warm-up, in MB")
	scaleN := flag.Int("scale", 0, "measure the sign-out state with this many sign-ins and sign-outs recorded")
	storageKind := flag.String("storage", "file", "scale: file or redis")
	idle := flag.Duration("idle", 30*time.Second, "scale: how long the idle CPU is measured")
	flag.Parse()
	if *scaleN > 0 {
		if err := scale(*scaleN, *storageKind, *idle); err != nil {
			log.Fatal(err)
		}
		return
	}

	dir, _ := os.MkdirTemp("", "b2c-load-")
	defer os.RemoveAll(dir)
	t := fatal{}
	idp, plain, protected := testcaddy.FreePort(t), testcaddy.FreePort(t), testcaddy.FreePort(t)
	clientID := "6d4c8a31-2f1e-4b8a-9c57-0e3f1a2b4c5d"
	cfg := fmt.Sprintf(`{
	admin off
	persist_config off
	storage file_system %q
	log default {
		level ERROR
	}
}
http://127.0.0.1:%d {
	b2c_emulator {
		client %s {
			redirect_uri http://localhost:%d/.auth/login/b2c/callback
		}
		user ada@contoso.example Passw0rd! {
			name "Ada Lovelace"
		}
		user many@contoso.example Passw0rd! {
			name "Many Claims"
%s		}
	}
}
http://localhost:%d {
	respond "hello {http.auth.user.name}"
}
http://localhost:%d {
	b2c_auth {
		authority http://127.0.0.1:%d/contoso.onmicrosoft.com
		policy B2C_1_susi
		client_id %s
		scopes openid offline_access %s
	}
	respond "hello {http.auth.user.name}"
}
`, dir, idp, clientID, protected, manyClaims(), plain, protected, idp, clientID, clientID)
	if err := caddy.Load(testcaddy.Adapt(t, cfg), true); err != nil {
		log.Fatal(err)
	}
	defer caddy.Stop()

	// Sign in, as a browser, and keep the session cookie and the access
	// token (the client ID as a scope gives one); also as a user with many
	// claims, whose session needs several cookies.
	site := fmt.Sprintf("http://localhost:%d", protected)
	b, cookie := signIn(site, "ada@contoso.example")
	_, bigCookie := signIn(site, "many@contoso.example")
	fmt.Printf("session cookies: %d bytes in %d cookie(s); with many claims %d bytes in %d\n",
		len(cookie), strings.Count(cookie, "="), len(bigCookie), strings.Count(bigCookie, "="))
	me := b.Get(site + "/.auth/me")
	var who []struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal([]byte(me.Body), &who); err != nil || len(who) == 0 || who[0].AccessToken == "" {
		log.Fatalf("no access token in /.auth/me: %s", me.Body)
	}

	if *soakFor > 0 {
		if err := soak(site, cookie, *soakFor, *rssGrowth<<20); err != nil {
			log.Fatalf("soak failed: %v", err)
		}
		return
	}

	targets := []struct {
		name, url, header, value string
	}{
		// The same cookie goes to the site without the plugin, so that only
		// the plugin's work differs.
		{"without plugin", fmt.Sprintf("http://localhost:%d/", plain), "Cookie", cookie},
		{"b2c_auth, session cookie", site + "/", "Cookie", cookie},
		{"without plugin, big cookie", fmt.Sprintf("http://localhost:%d/", plain), "Cookie", bigCookie},
		{"b2c_auth, chunked session", site + "/", "Cookie", bigCookie},
		{"b2c_auth, bearer token", site + "/", "Authorization", "Bearer " + who[0].AccessToken},
	}
	totals := make([]time.Duration, len(targets))
	for r := range *rounds {
		for i, tg := range targets {
			d := load(tg.url, tg.header, tg.value, *requests, *concurrency)
			totals[i] += d
			fmt.Printf("round %d  %-26s %8.0f req/s\n", r+1, tg.name, float64(*requests)/d.Seconds())
		}
	}
	base, bigBase := float64(*requests**rounds)/totals[0].Seconds(), float64(*requests**rounds)/totals[2].Seconds()
	fmt.Println()
	for i, tg := range targets {
		rps := float64(*requests**rounds) / totals[i].Seconds()
		ratio := rps / base
		if strings.Contains(tg.name, "big") || strings.Contains(tg.name, "chunked") {
			ratio = rps / bigBase // against plain Caddy with the same big Cookie header
		}
		fmt.Printf("%-26s %8.0f req/s  ratio to without plugin: %.2f\n", tg.name, rps, ratio)
	}

	// Full sign-ins (start, the emulator's form, the callback) per second,
	// one after the other: what one client sustains end to end.
	start, n := time.Now(), 0
	for time.Since(start) < 5*time.Second {
		signIn(site, "ada@contoso.example")
		n++
	}
	fmt.Printf("\nfull sign-ins, one at a time: %.0f/s\n", float64(n)/time.Since(start).Seconds())
}

// signIn signs in as a browser and returns it with its Cookie header.
func signIn(site, email string) (*testcaddy.Browser, string) {
	b := testcaddy.NewBrowser(fatal{})
	page := b.Follow(site + "/")
	landed := b.FollowResponse(b.Submit(page, map[string]string{"email": email, "password": "Passw0rd!"}), "")
	if !strings.HasPrefix(landed.Body, "hello") {
		log.Fatalf("sign-in failed: %d %s", landed.StatusCode, landed.Body)
	}
	u, _ := url.Parse(site)
	var cookie strings.Builder
	for _, c := range b.Jar.Cookies(u) {
		fmt.Fprintf(&cookie, "%s=%s; ", c.Name, c.Value)
	}
	return b, strings.TrimSuffix(cookie.String(), "; ")
}

// manyClaims are claim lines for a user whose tokens need a chunked
// session: random values, which compression cannot shrink.
func manyClaims() string {
	var sb strings.Builder
	for i := range 40 {
		v := make([]byte, 30)
		_, _ = rand.Read(v)
		fmt.Fprintf(&sb, "\t\t\tclaim extension_Attr%02d %s\n", i, hex.EncodeToString(v))
	}
	return sb.String()
}

// load sends n GET requests with c workers and returns the time taken; any
// answer other than 200 with the user's name is fatal.
func load(target, header, value string, n, c int) time.Duration {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c}, Timeout: 10 * time.Second}
	var next atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(2 * time.Minute)
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) && time.Now().Before(deadline) {
				req, _ := http.NewRequest(http.MethodGet, target, nil)
				req.Header.Set("Accept", "text/html")
				if header != "" {
					req.Header.Set(header, value)
				}
				resp, err := client.Do(req)
				if err != nil {
					log.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "hello") {
					log.Fatalf("%s: %d %s", target, resp.StatusCode, body)
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}
