package session

import (
	"sync"
	"time"
)

// Cache remembers what a cookie or token stands for (the identity of a
// session, or of a bearer token) by the exact value it came from,
// compared whole, so that no collision can pass one user off as another,
// until it expires. It is bounded: when full, it drops expired entries,
// then half of the rest.
type Cache[T any] struct {
	mu      sync.RWMutex
	max     int
	entries map[string]cached[T]
}

type cached[T any] struct {
	value   T
	whole   string // a cookie's whole value, when the key is its first chunk
	expires time.Time
}

// NewCache makes a cache of at most max entries.
func NewCache[T any](max int) *Cache[T] {
	return &Cache[T]{max: max, entries: make(map[string]cached[T])}
}

// Get is the value cached under key (a token, whole), if it has not
// expired.
func (c *Cache[T]) Get(key string, now time.Time) (T, bool) {
	c.mu.RLock()
	e, ok := c.entries[key]
	c.mu.RUnlock()
	if !ok || !now.Before(e.expires) {
		var zero T
		return zero, false
	}
	return e.value, true
}

// GetChunked is Get for a session cookie's value still in chunks: the
// entry is found by the first chunk and must match the value whole.
func (c *Cache[T]) GetChunked(v *Chunked, now time.Time) (T, bool) {
	c.mu.RLock()
	e, ok := c.entries[v.First()]
	c.mu.RUnlock()
	if !ok || !now.Before(e.expires) || !v.Equals(e.whole) {
		var zero T
		return zero, false
	}
	return e.value, true
}

// PutCookie caches what a session cookie's value stands for, for
// GetChunked: under the value's first chunk, the whole value kept to
// compare.
func (c *Cache[T]) PutCookie(value string, v T, expires, now time.Time) {
	c.put(value[:min(len(value), ChunkSize)], cached[T]{value: v, whole: value, expires: expires}, now)
}

// Put caches v under key until expires; now decides which entries have
// expired when the cache is full.
func (c *Cache[T]) Put(key string, v T, expires, now time.Time) {
	c.put(key, cached[T]{value: v, expires: expires}, now)
}

func (c *Cache[T]) put(key string, e cached[T], now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for k, old := range c.entries {
			if !now.Before(old.expires) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < c.max/2 {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[key] = e
}
