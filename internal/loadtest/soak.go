package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// soak runs, for d, signed-in requests alongside floods of what an
// attacker or a broken client sends, and samples memory and goroutines. It
// fails on any 5xx, on a signed-in request that is not served, and when
// the RSS grows more than rssGrowth bytes, or the goroutines by more than
// 200, past their level after the first quarter (the warm-up).
func soak(site, cookie string, d time.Duration, rssGrowth int) error {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	random := func(n int) string {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	kinds := []struct {
		name string
		req  func() *http.Request
		ok   func(status int) bool
	}{
		{"signed-in", func() *http.Request { return get(site+"/", "Cookie", cookie) }, func(s int) bool { return s == 200 }},
		{"bogus callback", func() *http.Request {
			return get(site+"/.auth/login/b2c/callback?state="+random(32)+"&code="+random(24), "", "")
		}, func(s int) bool { return s >= 400 && s < 500 }},
		{"garbage cookie", func() *http.Request { return get(site+"/", "Cookie", "b2c_session="+random(600)) }, func(s int) bool { return s == 302 }},
		{"forged bearer", func() *http.Request {
			header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","kid":"` + random(8) + `"}`))
			return get(site+"/api", "Authorization", "Bearer "+header+"."+random(200)+"."+random(256))
		}, func(s int) bool { return s == 401 }},
		{"abandoned sign-in", func() *http.Request { return get(site+"/.auth/login?post_login_redirect_uri=/"+random(8), "", "") }, func(s int) bool { return s == 302 }},
	}
	counts := make([]atomic.Int64, len(kinds))
	var failure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, k := range kinds {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					resp, err := client.Do(k.req())
					if err != nil {
						failure.CompareAndSwap(nil, fmt.Errorf("%s: %v", k.name, err))
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode >= 500 || !k.ok(resp.StatusCode) {
						failure.CompareAndSwap(nil, fmt.Errorf("%s: HTTP %d", k.name, resp.StatusCode))
						return
					}
					counts[i].Add(1)
				}
			}()
		}
	}

	start := time.Now()
	var baseRSS, maxRSS, baseG, maxG int
	tick := time.NewTicker(max(d/40, 500*time.Millisecond))
	defer tick.Stop()
	var err error
	for err == nil && time.Since(start) < d {
		<-tick.C
		if f := failure.Load(); f != nil {
			err = f.(error)
			break
		}
		rss, g := rssBytes(), runtime.NumGoroutine()
		if time.Since(start) < d/4 {
			baseRSS, baseG = max(baseRSS, rss), max(baseG, g)
			continue
		}
		maxRSS, maxG = max(maxRSS, rss), max(maxG, g)
		if rss > baseRSS+rssGrowth {
			err = fmt.Errorf("RSS grew from %d MB to %d MB", baseRSS>>20, rss>>20)
		} else if g > baseG+200 {
			err = fmt.Errorf("goroutines grew from %d to %d", baseG, g)
		}
	}
	close(stop)
	wg.Wait()
	if f := failure.Load(); err == nil && f != nil {
		err = f.(error)
	}
	fmt.Printf("soak of %s:\n", time.Since(start).Round(time.Second))
	for i, k := range kinds {
		fmt.Printf("  %-18s %9d requests\n", k.name, counts[i].Load())
	}
	fmt.Printf("  RSS after warm-up %d MB, peak %d MB; goroutines %d, peak %d\n", baseRSS>>20, maxRSS>>20, baseG, maxG)
	return err
}

func get(u, header, value string) *http.Request {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", "text/html")
	if header != "" {
		req.Header.Set(header, value)
	}
	return req
}

// rssBytes is the process's resident set size, from /proc (Linux).
func rssBytes() int {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			return kb << 10
		}
	}
	return 0
}
