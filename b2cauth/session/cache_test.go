package session

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCacheIsBoundedAndExact: entries expire, a full cache drops the
// expired and then half of the rest, and concurrent readers and writers
// see only what was put, under the exact key.
func TestCacheIsBoundedAndExact(t *testing.T) {
	now := time.Now()
	c := NewCache[string](8)
	c.PutToken("gone", "old", now.Add(-time.Second), now)
	if _, ok := c.GetToken("gone", now); ok {
		t.Error("an expired entry was returned")
	}
	for i := range 100 {
		c.PutToken(fmt.Sprint("k", i), fmt.Sprint("v", i), now.Add(time.Hour), now)
		if n := c.size.Load(); n > 8 {
			t.Fatalf("%d entries in a cache of 8", n)
		}
	}
	if v, ok := c.GetToken("k99", now); !ok || v != "v99" {
		t.Errorf("the newest entry: %q %v", v, ok)
	}

	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				key := fmt.Sprint("w", w, "-", i%50)
				c.PutToken(key, key, now.Add(time.Hour), now)
				if v, ok := c.GetToken(key, now); ok && v != key {
					t.Errorf("%s stood for %s", key, v)
				}
			}
		})
	}
	wg.Wait()
	if n := c.size.Load(); n > 8 || n < 0 {
		t.Errorf("%d entries counted after concurrent use", n)
	}
}

// TestCookieFoundOnlyWhole: a session cookie's entry is found by the
// value's first characters; a value that starts the same but differs
// anywhere after them — a forged cookie built on a stolen prefix, or a
// chunk swapped — is not found, and a cookie shorter than the key works.
func TestCookieFoundOnlyWhole(t *testing.T) {
	now := time.Now()
	c := NewCache[string](8)
	long := strings.Repeat("a", 60) + strings.Repeat("b", 2*ChunkSize)
	c.PutCookie(long, "ada", now.Add(time.Hour), now)
	c.PutCookie("short", "bob", now.Add(time.Hour), now)
	chunked := func(value string) *Chunked {
		v := &Chunked{}
		for ; value != ""; v.n++ {
			n := min(len(value), ChunkSize)
			v.parts[v.n], value = value[:n], value[n:]
		}
		return v
	}
	if v, ok := c.GetChunked(chunked(long), now); !ok || v != "ada" {
		t.Fatalf("the cookie itself: %q %v", v, ok)
	}
	if v, ok := c.GetChunked(chunked("short"), now); !ok || v != "bob" {
		t.Fatalf("a short cookie: %q %v", v, ok)
	}
	for name, forged := range map[string]string{
		"last byte changed": long[:len(long)-1] + "c",
		"shorter":           long[:len(long)-1],
		"longer":            long + "b",
		"changed after key": long[:50] + "x" + long[51:],
		"the key alone":     long[:44],
	} {
		if v, ok := c.GetChunked(chunked(forged), now); ok {
			t.Errorf("%s: found %q", name, v)
		}
	}
}

// TestTokenFoundOnlyWhole: a verified token's entry is found by the end of
// its signature; a token that ends the same but differs before — a payload
// changed under a copied signature — is not found.
func TestTokenFoundOnlyWhole(t *testing.T) {
	now := time.Now()
	c := NewCache[string](8)
	token := "eyJhbGciOiJSUzI1NiJ9." + strings.Repeat("p", 800) + "." + strings.Repeat("s", 342)
	c.PutToken(token, "ada", now.Add(time.Hour), now)
	if v, ok := c.GetToken(token, now); !ok || v != "ada" {
		t.Fatalf("the token itself: %q %v", v, ok)
	}
	for name, forged := range map[string]string{
		"payload changed": strings.Replace(token, "ppp", "ppq", 1),
		"header changed":  "x" + token[1:],
		"prefix added":    "x" + token,
		"the key alone":   token[len(token)-44:],
	} {
		if v, ok := c.GetToken(forged, now); ok {
			t.Errorf("%s: found %q", name, v)
		}
	}
	if _, ok := c.GetToken(token, now.Add(2*time.Hour)); ok {
		t.Error("an expired token was found")
	}
}
