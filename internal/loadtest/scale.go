package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	_ "github.com/pberkel/caddy-storage-redis"
	"go.uber.org/zap"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/signouts"
	"github.com/caddy-b2c/caddy-b2c/internal/testcaddy"
)

// scale measures the sign-out state with n recorded sign-ins (provider
// sids) and n sign-outs, on file storage or on a Redis started here: the
// cost of a sign-out, of a front-channel request with a random sid, of a
// sync pass, the idle CPU at the default revocation_sync, the RSS, and the
// signed-in latency while front-channel floods run — each also before the
// state is recorded, in the same run.
func scale(n int, storageKind string, idle time.Duration) error {
	dir, _ := os.MkdirTemp("", "b2c-scale-")
	defer os.RemoveAll(dir)
	t := fatal{}
	storageConfig := fmt.Sprintf("storage file_system %q", dir)
	if storageKind == "redis" {
		addr, stop, err := startRedis(dir)
		if err != nil {
			return err
		}
		defer stop()
		storageConfig = fmt.Sprintf("storage redis {\n\t\taddress %s\n\t}", addr)
	}
	idp, port := testcaddy.FreePort(t), testcaddy.FreePort(t)
	clientID := "6d4c8a31-2f1e-4b8a-9c57-0e3f1a2b4c5d"
	cfg := fmt.Sprintf(`{
	admin off
	persist_config off
	%s
	log default {
		level ERROR
	}
}
http://127.0.0.1:%d {
	bind 127.0.0.1
	b2c_emulator {
		sid_claim
		client %s {
			redirect_uri http://localhost:%d/.auth/login/b2c/callback
		}
	}
}
http://localhost:%d {
	bind 127.0.0.1
	b2c_auth {
		authority http://127.0.0.1:%d/contoso.onmicrosoft.com
		policy B2C_1_susi
		client_id %s
	}
	respond "hello {http.auth.user.name}"
}
`, storageConfig, idp, clientID, port, port, idp, clientID)
	if err := caddy.Load(testcaddy.Adapt(t, cfg), true); err != nil {
		return err
	}
	defer caddy.Stop()
	site := fmt.Sprintf("http://localhost:%d", port)
	_, cookie := signIn(site, "ada@contoso.example")
	storage := caddy.ActiveContext().Storage()
	ctx := context.Background()

	type figures struct {
		frontChannel, signedIn, signedInFlood, signedInFloodP99 time.Duration
		idleCPU                                                 float64
		rss                                                     int
	}
	measure := func() figures {
		var f figures
		f.frontChannel = median(latencies(400, func() *http.Request {
			return get(site+"/.auth/logout/frontchannel?sid="+randomID(), "", "")
		}, 200))
		f.signedIn = median(latencies(2000, func() *http.Request { return get(site+"/", "Cookie", cookie) }, 200))
		stop := flood(8, func() *http.Request { return get(site+"/.auth/logout/frontchannel?sid="+randomID(), "", "") })
		during := latencies(2000, func() *http.Request { return get(site+"/", "Cookie", cookie) }, 200)
		stop()
		f.signedInFlood, f.signedInFloodP99 = median(during), percentile(during, 0.99)
		f.idleCPU = idleCPU(idle)
		f.rss = rssBytes()
		return f
	}
	before := measure()

	// Record n sign-ins and n sign-outs, as a cluster's other instances
	// would, through the same storage.
	seeder := signouts.New(storage, signouts.DefaultSync, zap.NewNop())
	exp := time.Now().Add(8 * time.Hour)
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	var seedErr atomic.Value
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(n); i = next.Add(1) {
				if err := seeder.RecordSignIn(ctx, "sid-"+strconv.FormatInt(i, 10), exp); err != nil {
					seedErr.CompareAndSwap(nil, err)
					return
				}
				if err := seeder.Add(ctx, signouts.Entry{Kind: signouts.KindSession, Value: randomID(), Expires: exp.Unix()}); err != nil {
					seedErr.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := seedErr.Load().(error); err != nil {
		return err
	}
	fmt.Printf("%s: recorded %d sign-ins and %d sign-outs in %s\n", storageKind, n, n, time.Since(start).Round(time.Millisecond))

	// An instance that starts now reads them all once.
	other := signouts.New(storage, signouts.DefaultSync, zap.NewNop())
	start = time.Now()
	other.Sync(ctx)
	firstSync := time.Since(start)
	if other.Len() < n {
		return fmt.Errorf("the first sync read %d of %d sign-outs", other.Len(), n)
	}
	// The running Caddy reads them at its next syncs; then it is steady.
	time.Sleep(2*signouts.DefaultSync + time.Second)

	syncRecent := median(timings(5, func() { other.Sync(ctx) }))
	// Steady state: past the window that each pass lists again.
	time.Sleep(3 * time.Minute)

	signOut := median(timings(500, func() {
		_ = other.Add(ctx, signouts.Entry{Kind: signouts.KindSession, Value: randomID(), Expires: exp.Unix()})
	}))
	syncIdle := median(timings(20, func() { other.Sync(ctx) }))
	syncOne := median(timings(20, func() {
		_ = seeder.Add(ctx, signouts.Entry{Kind: signouts.KindSession, Value: randomID(), Expires: exp.Unix()})
		other.Sync(ctx)
	}))
	known := median(timings(200, func() { _, _ = other.KnownSignIn(ctx, randomID()) }))
	// Only the running Caddy's own list should weigh in the RSS.
	seeder, other = nil, nil
	runtime.GC()
	debug.FreeOSMemory()
	after := measure()

	fmt.Printf("\n%s, %d sign-ins and %d sign-outs recorded (before → after):\n", storageKind, n, n)
	fmt.Printf("  sign-out (one entry written)             %10s\n", signOut)
	fmt.Printf("  front-channel sid lookup (storage read)  %10s\n", known)
	fmt.Printf("  front-channel request, random sid        %10s → %s\n", before.frontChannel, after.frontChannel)
	fmt.Printf("  sync pass, the %d still in its window   %10s\n", n, syncRecent)
	fmt.Printf("  sync pass, nothing new                   %10s\n", syncIdle)
	fmt.Printf("  sync pass, one new sign-out              %10s\n", syncOne)
	fmt.Printf("  first sync of a starting instance        %10s\n", firstSync.Round(time.Millisecond))
	fmt.Printf("  idle CPU at revocation_sync %s          %9.2f%% → %.2f%% of a core\n", signouts.DefaultSync, before.idleCPU, after.idleCPU)
	fmt.Printf("  RSS                                      %7d MB → %d MB\n", before.rss>>20, after.rss>>20)
	fmt.Printf("  signed-in request, median                %10s → %s\n", before.signedIn, after.signedIn)
	fmt.Printf("  … under a front-channel flood (8 conns)  %10s → %s (p99 %s → %s)\n", before.signedInFlood, after.signedInFlood, before.signedInFloodP99, after.signedInFloodP99)
	return nil
}

func randomID() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

var scaleClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// latencies times n requests, one at a time; an answer other than want is
// fatal.
func latencies(n int, req func() *http.Request, want int) []time.Duration {
	out := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		resp, err := scaleClient.Do(req())
		if err != nil {
			log.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			log.Fatalf("%s: HTTP %d", resp.Request.URL.Path, resp.StatusCode)
		}
		out = append(out, time.Since(start))
	}
	return out
}

// flood sends requests from c workers until stopped.
func flood(c int, req func() *http.Request) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if resp, err := scaleClient.Do(req()); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	return func() { close(done); wg.Wait() }
}

func timings(n int, f func()) []time.Duration {
	out := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		f()
		out = append(out, time.Since(start))
	}
	return out
}

func median(d []time.Duration) time.Duration { return percentile(d, 0.5) }

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*p)].Round(time.Microsecond)
}

// idleCPU is the process's CPU use over d with no traffic, in % of a core.
func idleCPU(d time.Duration) float64 {
	before, start := cpuTime(os.Getpid()), time.Now()
	time.Sleep(d)
	return 100 * (cpuTime(os.Getpid()) - before).Seconds() / time.Since(start).Seconds()
}

// startRedis runs Debian's redis-server on a loopback port.
func startRedis(dir string) (addr string, stop func(), err error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, fmt.Errorf("redis-server is not installed (apt-get install redis-server)")
	}
	port := testcaddy.FreePort(fatal{})
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no", "--dir", dir)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop = func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		if strings.Contains(lines.Text(), "Ready to accept connections") {
			go func() {
				for lines.Scan() {
				}
			}()
			return fmt.Sprintf("127.0.0.1:%d", port), stop, nil
		}
	}
	stop()
	return "", nil, fmt.Errorf("redis-server did not start")
}
