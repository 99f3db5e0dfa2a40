package session

import (
	"fmt"
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
	c.Put("gone", "old", now.Add(-time.Second), now)
	if _, ok := c.Get("gone", now); ok {
		t.Error("an expired entry was returned")
	}
	for i := range 100 {
		c.Put(fmt.Sprint("k", i), fmt.Sprint("v", i), now.Add(time.Hour), now)
		if n := c.size.Load(); n > 8 {
			t.Fatalf("%d entries in a cache of 8", n)
		}
	}
	if v, ok := c.Get("k99", now); !ok || v != "v99" {
		t.Errorf("the newest entry: %q %v", v, ok)
	}

	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				key := fmt.Sprint("w", w, "-", i%50)
				c.Put(key, key, now.Add(time.Hour), now)
				if v, ok := c.Get(key, now); ok && v != key {
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
