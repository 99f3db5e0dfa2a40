// Command loadtest compares, in one run, the same Caddy with and without
// b2c_auth: sites in one process serve the same 1 KB file (or, with -body
// respond, the same respond), some of them behind b2c_auth with a
// signed-in session (and a bearer token). It
// sends the same bounded load to each, in alternating rounds so that the
// noise of a shared machine falls on both, and reports throughput ratios.
//
//	go run ./internal/loadtest [-requests 20000] [-concurrency 8] [-rounds 3] [-against <git revision>] [-body file|respond]
//
// Each b2c_auth side is reported against stock Caddy sent no credentials
// and against stock Caddy sent the same header (the floor: what the header
// alone costs), with the allocations per request of the matching Go
// benchmark. With -against, the same sites also run from a Caddy built at
// that revision, alternating with this build's, so that a change is
// measured in one run.
//
// With -soak <duration> it runs a soak instead: for that long, signed-in
// traffic mixed with floods of bogus callbacks, distinct garbage session
// cookies, distinct forged bearer tokens and sign-ins started and
// abandoned; it samples the process's RSS and goroutines and fails if they
// grow past a bound or any answer is a 5xx.
//
//	go run ./internal/loadtest -soak 5m [-rss-growth-mb 64]
//
// With -scale <n> it measures the sign-out state instead, with n recorded
// sign-ins and n sign-outs, on file storage or on a Redis it starts
// (Debian's redis-server): the cost of a sign-out, of a front-channel
// request, of a sync pass, the idle CPU, the RSS, and the signed-in latency
// under a front-channel flood, before and after.
//
//	go run ./internal/loadtest -scale 100000 [-storage file|redis] [-idle 30s]
//
// Everything runs on 127.0.0.1; the load is bounded in count and time.
package main

import (
	"bufio"
	"bytes"
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
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-b2c/caddy-b2c/internal/testcaddy"
)

// siteBody is what the compared sites serve: a 1 KB file, or a respond
// naming the user.
var siteBody = flag.String("body", "file", "what every compared site serves: file (a 1 KB file from file_server, as the goals were set) or respond (a respond naming the user: the placeholders' cost counted too)")

// fatal lets the load test drive testcaddy's browser.
type fatal struct{}

func (fatal) Helper()                      {}
func (fatal) Fatal(args ...any)            { log.Fatal(args...) }
func (fatal) Fatalf(f string, args ...any) { log.Fatalf(f, args...) }

func main() {
	requests := flag.Int("requests", 20000, "requests per side per round")
	concurrency := flag.Int("concurrency", 8, "concurrent clients")
	rounds := flag.Int("rounds", 4, "alternating rounds")
	signIns := flag.Int("sign-ins", 300, "full sign-ins per round")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the serving Caddy while it serves only signed-in requests (of -profile-side) to this file")
	profileSide := flag.String("profile-side", "cookie", "cpuprofile: which requests: cookie (a one-cookie session), storage (session_store storage) or bearer; stock-cookie, stock-storage or stock-bearer for that side's floor (stock Caddy sent the same header)")
	soakFor := flag.Duration("soak", 0, "run a soak for this long instead of the comparison")
	rssGrowth := flag.Int("rss-growth-mb", 64, "soak: the most the RSS may grow after warm-up, in MB")
	scaleN := flag.Int("scale", 0, "measure the sign-out state with this many sign-ins and sign-outs recorded")
	storageKind := flag.String("storage", "file", "scale: file or redis")
	idle := flag.Duration("idle", 30*time.Second, "scale: how long the idle CPU is measured")
	serveFile := flag.String("serve", "", "internal: serve this Caddyfile until stdin closes (the comparison's Caddy processes)")
	against := flag.String("against", "", "also run the sites from a Caddy built at this git revision, alternating with this build's")
	flag.Parse()
	switch {
	case *serveFile != "":
		serve(*serveFile)
		return
	case *scaleN > 0:
		if err := scale(*scaleN, *storageKind, *idle); err != nil {
			log.Fatal(err)
		}
		return
	}

	dir, _ := os.MkdirTemp("", "b2c-load-")
	defer os.RemoveAll(dir)
	t := fatal{}
	ports := sitePorts{idp: testcaddy.FreePort(t), plain: testcaddy.FreePort(t), protected: testcaddy.FreePort(t), stored: testcaddy.FreePort(t)}
	idpConfig, sitesConfig := configs(dir, ports)
	if *soakFor > 0 {
		// The soak samples its own process: everything runs in it.
		if err := caddy.Load(testcaddy.Adapt(t, idpConfig+sitesConfig), true); err != nil {
			log.Fatal(err)
		}
		defer caddy.Stop()
		site := fmt.Sprintf("http://localhost:%d", ports.protected)
		_, cookie := signIn(site, "ada@contoso.example")
		if err := soak(site, cookie, *soakFor, *rssGrowth<<20); err != nil {
			log.Fatalf("soak failed: %v", err)
		}
		return
	}

	// The provider and the sites run in processes of their own, so that the
	// sites' CPU time is theirs alone (not the load generator's, nor the
	// emulator's signing).
	idpServer := startServer(dir, "idp", globals(dir)+idpConfig)
	defer idpServer.stop()
	sites := startServer(dir, "sites", globals(dir)+sitesConfig)
	defer sites.stop()
	var baseline serverHandle
	var basePorts sitePorts
	if *against != "" {
		// The same sites, from the other build, on ports of their own, in
		// the same storage (so the sessions open there too).
		self, err := buildAt(*against, dir)
		if err != nil {
			log.Fatal(err)
		}
		basePorts = sitePorts{idp: ports.idp, plain: testcaddy.FreePort(t), protected: ports.protected, stored: ports.stored}
		basePorts.protected, basePorts.stored = testcaddy.FreePort(t), testcaddy.FreePort(t)
		_, baseConfig := configs(dir, sitePorts{idp: ports.idp, plain: basePorts.plain, protected: basePorts.protected, stored: basePorts.stored})
		baseline = startServerWith(self, dir, "baseline", globals(dir)+baseConfig)
		defer baseline.stop()
	}
	site := fmt.Sprintf("http://localhost:%d", ports.protected)
	stored := fmt.Sprintf("http://localhost:%d", ports.stored)
	plain := fmt.Sprintf("http://localhost:%d/", ports.plain)

	// Sign in, as a browser, and keep the session cookie and the access
	// token (the client ID as a scope gives one); also as a user with many
	// claims, whose session needs several cookies; and on the site that
	// keeps sessions in storage.
	b, cookie := signIn(site, "ada@contoso.example")
	_, bigCookie := signIn(site, "many@contoso.example")
	_, storedCookie := signIn(stored, "ada@contoso.example")
	fmt.Printf("session cookies: %d bytes in %d cookie(s); with many claims %d bytes in %d; session_store storage %d bytes\n",
		len(cookie), strings.Count(cookie, "="), len(bigCookie), strings.Count(bigCookie, "="), len(storedCookie))
	me := b.Get(site + "/.auth/me")
	var who []struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal([]byte(me.Body), &who); err != nil || len(who) == 0 || who[0].AccessToken == "" {
		log.Fatalf("no access token in /.auth/me: %s", me.Body)
	}
	bearer := "Bearer " + who[0].AccessToken

	if *cpuProfile != "" {
		target, header, value := site, "Cookie", cookie
		side, floor := strings.CutPrefix(*profileSide, "stock-")
		switch side {
		case "storage":
			target, value = stored, storedCookie
		case "bearer":
			header, value = "Authorization", bearer
		}
		if floor {
			// The side's floor: stock Caddy sent the same header.
			target = strings.TrimSuffix(plain, "/")
		}
		profile(sites, *cpuProfile, dir, target, header, value, *requests**rounds, *concurrency)
		return
	}

	// Each side is measured against a baseline: the same Caddy, the site
	// without b2c_auth, sent the same headers (or none).
	sides := []side{
		{name: "stock Caddy, no cookie", url: plain},
		{name: "stock Caddy, the session's Cookie", url: plain, header: "Cookie", value: cookie},
		{name: "b2c_auth, one-cookie session", url: site + "/", header: "Cookie", value: cookie, sameHeader: 1},
		{name: "stock Caddy, three cookies' header", url: plain, header: "Cookie", value: bigCookie},
		{name: "b2c_auth, three-cookie session", url: site + "/", header: "Cookie", value: bigCookie, sameHeader: 3},
		{name: "stock Caddy, the stored session's Cookie", url: plain, header: "Cookie", value: storedCookie},
		{name: "b2c_auth, session_store storage", url: stored + "/", header: "Cookie", value: storedCookie, sameHeader: 5},
		{name: "stock Caddy, the bearer header", url: plain, header: "Authorization", value: bearer},
		{name: "b2c_auth, bearer token", url: site + "/", header: "Authorization", value: bearer, sameHeader: 7},
	}
	for i := range sides {
		sides[i].pid = sites.pid
	}
	order := make([]int, 0, 2*len(sides)) // the order each round measures the sides in
	for i := range sides {
		order = append(order, i)
	}
	if *against != "" {
		// The b2c_auth sides again, served by the other build, each right
		// after this build's.
		other := func(url string) string {
			url = strings.Replace(url, fmt.Sprint(ports.protected), fmt.Sprint(basePorts.protected), 1)
			return strings.Replace(url, fmt.Sprint(ports.stored), fmt.Sprint(basePorts.stored), 1)
		}
		order = order[:0]
		for i, sd := range slices.Clone(sides) {
			order = append(order, i)
			if sd.sameHeader > 0 {
				sides = append(sides, side{name: sd.name + " @" + *against, url: other(sd.url), header: sd.header, value: sd.value, sameHeader: sd.sameHeader, pid: baseline.pid})
				order = append(order, len(sides)-1)
			}
		}
	}
	signInCPU := make([]float64, 0, *rounds)
	signInRate := make([]float64, 0, *rounds)
	for r := range *rounds {
		for _, i := range order {
			sd := &sides[i]
			before := cpuTime(sd.pid)
			d := load(sd.url, sd.header, sd.value, *requests, *concurrency)
			cpu := cpuTime(sd.pid) - before
			sd.cpu = append(sd.cpu, float64(cpu.Microseconds())/float64(*requests))
			sd.rps = append(sd.rps, float64(*requests)/d.Seconds())
			fmt.Printf("round %d  %-36s %8.0f req/s %7.1f µs CPU/request\n", r+1, sd.name, sd.rps[r], sd.cpu[r])
		}
		// Full sign-ins (start, the emulator's form, the callback with its
		// token redemption and verification), one after the other.
		before, start := cpuTime(sites.pid), time.Now()
		for range *signIns {
			signIn(site, "ada@contoso.example")
		}
		signInRate = append(signInRate, float64(*signIns)/time.Since(start).Seconds())
		signInCPU = append(signInCPU, float64((cpuTime(sites.pid)-before).Microseconds())/float64(*signIns))
		fmt.Printf("round %d  %-36s %8.0f /s     %7.0f µs CPU/sign-in\n", r+1, "full sign-ins, one at a time", signInRate[r], signInCPU[r])
	}

	fmt.Printf("\nmedians over %d alternating rounds, CPU of the serving Caddy process per request:\n", *rounds)
	fmt.Printf("%-36s %9s %12s %s\n", "", "req/s", "CPU/request", "against")
	for _, sd := range sides {
		cpu, rps := medianFloat(sd.cpu), medianFloat(sd.rps)
		line := fmt.Sprintf("%-36s %9.0f %9.1f µs", sd.name, rps, cpu)
		if sd.header != "" {
			line += fmt.Sprintf("   %+5.1f%% vs %s", (cpu/medianFloat(sides[0].cpu)-1)*100, sides[0].name)
		}
		if sd.sameHeader > 0 {
			same := sides[sd.sameHeader]
			line += fmt.Sprintf(", %+5.1f%% vs %s (%+.1f%% round by round)", (cpu/medianFloat(same.cpu)-1)*100, same.name, (pairedRatio(sd.cpu, same.cpu)-1)*100)
		}
		fmt.Println(line)
	}
	fmt.Printf("%-36s %9.0f /s %7.0f µs CPU/sign-in\n", "full sign-ins, one at a time", medianFloat(signInRate), medianFloat(signInCPU))
	benchmarkAllocations()
}

// benchmarkAllocations prints the allocations per request of the
// handler's benchmarks (go test -bench), beside the load figures.
func benchmarkAllocations() {
	cmd := exec.Command("go", "test", "./b2cauth", "-run", "^$", "-bench", "^(BenchmarkAuthenticatedRequest|BenchmarkAuthenticatedRequestThreeChunks|BenchmarkStoredSession|BenchmarkBearerCached)$", "-benchtime", "20000x", "-benchmem")
	out, err := cmd.CombinedOutput()
	if err != nil {
		fmt.Printf("\nallocations per request: the benchmarks did not run (%v); run them from the repository's root\n", err)
		return
	}
	fmt.Println("\nallocations per request (go test ./b2cauth -bench …, the handler alone, the benchmark's own replacer included):")
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 8 && strings.HasPrefix(f[0], "Benchmark") {
			fmt.Printf("  %-44s %s B/request, %s allocations\n", strings.TrimSuffix(f[0], "-2"), f[4], f[6])
		}
	}
}

// buildAt builds this program at a git revision (a worktree in dir) and
// returns its path.
func buildAt(rev, dir string) (string, error) {
	tree := filepath.Join(dir, "at-"+strings.NewReplacer("/", "_", ".", "_").Replace(rev))
	if out, err := exec.Command("git", "worktree", "add", "--detach", tree, rev).CombinedOutput(); err != nil {
		return "", fmt.Errorf("git worktree add %s: %v: %s", rev, err, out)
	}
	defer exec.Command("git", "worktree", "remove", "--force", tree).Run()
	bin := filepath.Join(dir, "loadtest-"+filepath.Base(tree))
	build := exec.Command("go", "build", "-o", bin, "./internal/loadtest")
	build.Dir = tree
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building %s: %v: %s", rev, err, out)
	}
	return bin, nil
}

// side is one kind of request the comparison sends, and what it measured.
type side struct {
	name, url, header, value string
	sameHeader               int // the stock side sent the same header, when > 0
	pid                      int // the process that serves it
	cpu, rps                 []float64
}

// pairedRatio is the median, over the rounds, of a side's CPU per request
// divided by another's in the same round: sides measured minutes apart
// share each round's speed of the machine, so this drifts less than the
// ratio of the medians.
func pairedRatio(side, floor []float64) float64 {
	ratios := make([]float64, 0, len(side))
	for r := range min(len(side), len(floor)) {
		if floor[r] > 0 {
			ratios = append(ratios, side[r]/floor[r])
		}
	}
	return medianFloat(ratios)
}

func medianFloat(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else if n > 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return 0
}

// sitePorts are the loopback ports of the comparison.
type sitePorts struct{ idp, plain, protected, stored int }

// globals are the comparison's Caddy global options.
func globals(dir string) string {
	return fmt.Sprintf("{\n\tadmin off\n\tpersist_config off\n\tstorage file_system %q\n\tlog default {\n\t\tlevel ERROR\n\t}\n}\n", dir)
}

// configs are the emulator's site and the compared sites: the same
// content without b2c_auth, with it (cookie sessions), and with it and
// session_store storage. The content is what -body says: a 1 KB file from
// file_server (as the issue that set the goals measured), or a respond
// that names the user (the placeholders' cost counted too).
func configs(dir string, p sitePorts) (idp, sites string) {
	clientID := "6d4c8a31-2f1e-4b8a-9c57-0e3f1a2b4c5d"
	idp = fmt.Sprintf(`http://127.0.0.1:%d {
	bind 127.0.0.1
	b2c_emulator {
		client %s {
			redirect_uri http://localhost:%d/.auth/login/b2c/callback http://localhost:%d/.auth/login/b2c/callback
		}
		user ada@contoso.example Passw0rd! {
			name "Ada Lovelace"
		}
		user many@contoso.example Passw0rd! {
			name "Many Claims"
%s		}
	}
}
`, p.idp, clientID, p.protected, p.stored, manyClaims())
	auth := func(extra string) string {
		return fmt.Sprintf(`	b2c_auth {
		authority http://127.0.0.1:%d/contoso.onmicrosoft.com
		policy B2C_1_susi
		client_id %s
		scopes openid offline_access %s
%s	}
%s`, p.idp, clientID, clientID, extra, content(dir))
	}
	sites = fmt.Sprintf("http://localhost:%d {\n\tbind 127.0.0.1\n%s}\nhttp://localhost:%d {\n\tbind 127.0.0.1\n%s}\nhttp://localhost:%d {\n\tbind 127.0.0.1\n%s}\n",
		p.plain, content(dir), p.protected, auth(""), p.stored, auth("\t\tsession_store storage\n"))
	return idp, sites
}

// content is what every compared site serves (-body).
func content(dir string) string {
	if *siteBody == "respond" {
		return "\trespond \"hello {http.auth.user.name}\"\n"
	}
	root := filepath.Join(dir, "www")
	page := "hello: a page of 1 KB\n"
	page += strings.Repeat("b2c_auth load test\n", (1024-len(page))/19)
	page += strings.Repeat(".", 1024-len(page))
	if err := os.MkdirAll(root, 0o755); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "index.html"), []byte(page), 0o644); err != nil {
		log.Fatal(err)
	}
	return fmt.Sprintf("\troot * %q\n\tfile_server\n", root)
}

// startServer runs this program with -serve on a Caddyfile, in a process
// of its own, until stop; the CPU profile goes where B2C_LOAD_CPUPROFILE
// says.
func startServer(dir, name, config string) serverHandle {
	self, err := os.Executable()
	if err != nil {
		log.Fatal(err)
	}
	return startServerWith(self, dir, name, config)
}

// startServerWith is startServer with another build of this program.
func startServerWith(self, dir, name, config string) serverHandle {
	path := filepath.Join(dir, name+".Caddyfile")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command(self, "-serve", path)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		log.Fatalf("%s: Caddy did not start: %q %v", name, line, err)
	}
	return serverHandle{pid: cmd.Process.Pid, stdin: stdin, cmd: cmd}
}

// serverHandle is a running -serve process.
type serverHandle struct {
	pid   int
	stdin io.Closer
	cmd   *exec.Cmd
}

// stop ends the process (it stops when its stdin closes) and waits for it.
func (s serverHandle) stop() {
	_ = s.stdin.Close()
	_ = s.cmd.Wait()
}

// serve runs a Caddyfile until stdin closes, printing "ready" once it
// serves; with B2C_LOAD_CPUPROFILE, it profiles its CPU meanwhile.
func serve(path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		log.Fatal(err)
	}
	if err := caddy.Load(testcaddy.Adapt(fatal{}, string(data)), true); err != nil {
		log.Fatal(err)
	}
	if out := os.Getenv("B2C_LOAD_CPUPROFILE"); out != "" {
		f, err := os.Create(out)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = caddy.Stop()
}

// profile serves only signed-in requests (a header and its value) from a
// Caddy process that profiles its CPU, and writes the profile to out.
func profile(sites serverHandle, out, dir, site, header, value string, n, c int) {
	sites.stop()
	os.Setenv("B2C_LOAD_CPUPROFILE", out)
	// The same sites again, the cookie key in the same storage: the session
	// opens in the new process.
	data, _ := os.ReadFile(filepath.Join(dir, "sites.Caddyfile"))
	profiled := startServer(dir, "profiled", string(data))
	os.Unsetenv("B2C_LOAD_CPUPROFILE")
	load(site+"/", header, value, n, c)
	profiled.stop()
	fmt.Printf("CPU profile of %d signed-in requests: %s (go tool pprof -top %s)\n", n, out, out)
}

// cpuTime is a process's CPU time so far (user and system, every thread),
// from /proc/<pid>/stat.
func cpuTime(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		log.Fatalf("CPU time of the serving process: %v (Linux /proc needed)", err)
	}
	// The command may hold spaces: the fields start after its closing ')'.
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// clockTicks is the kernel's USER_HZ, the unit of /proc's CPU times: 100
// on every Linux architecture Go supports.
const clockTicks = 100

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
