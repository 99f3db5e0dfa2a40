package session

import (
	"sync"
	"sync/atomic"
	"time"
)

// Cache remembers what a cookie or token stands for (the identity of a
// session, or of a bearer token) by the exact value it came from,
// compared whole, so that no collision can pass one user off as another,
// until it expires. It is bounded: when full, it drops expired entries,
// then half of the rest.
//
// A read takes no lock (a sync.Map, whose keys are written once and read
// many times): on every signed-in request, under load, on every core, a
// shared lock's counter would bounce between the cores' caches.
type Cache[T any] struct {
	max     int
	entries sync.Map // string → cached[T]
	size    atomic.Int64
	mu      sync.Mutex // puts, and the eviction they may do
}

type cached[T any] struct {
	value   T
	whole   string // a cookie's or token's whole value, when the key is part of it
	expires time.Time
}

// NewCache makes a cache of at most max entries.
func NewCache[T any](max int) *Cache[T] {
	return &Cache[T]{max: max}
}

// GetChunked finds what a session cookie stands for, while it has not
// expired, from its value still in chunks: the entry is found by the
// value's first characters and must match the value whole.
func (c *Cache[T]) GetChunked(v *Chunked, now time.Time) (T, bool) {
	found, ok := c.entries.Load(cookieKey(v.First()))
	if !ok {
		var zero T
		return zero, false
	}
	e := found.(*cached[T])
	if !now.Before(e.expires) || !v.Equals(e.whole) {
		var zero T
		return zero, false
	}
	return e.value, true
}

// PutCookie caches what a session cookie's value stands for, for
// GetChunked: under the value's first characters, the whole value kept to
// compare.
func (c *Cache[T]) PutCookie(value string, v T, expires, now time.Time) {
	c.put(cookieKey(value), &cached[T]{value: v, whole: value, expires: expires}, now)
}

// GetToken finds what a signed token (a JWT) stands for, while it has
// not expired: the entry is found by the end of its signature and must
// match the token whole.
func (c *Cache[T]) GetToken(token string, now time.Time) (T, bool) {
	found, ok := c.entries.Load(tokenKey(token))
	if !ok {
		var zero T
		return zero, false
	}
	e := found.(*cached[T])
	if !now.Before(e.expires) || e.whole != token {
		var zero T
		return zero, false
	}
	return e.value, true
}

// PutToken caches what a verified token stands for, for GetToken.
func (c *Cache[T]) PutToken(token string, v T, expires, now time.Time) {
	c.put(tokenKey(token), &cached[T]{value: v, whole: token, expires: expires}, now)
}

// tokenKey is what a token is cached by: the last 44 characters of its
// signature (33 bytes of it), which differ between any two tokens signed
// apart (their starts, the header, are the same for every token of an
// issuer), so that a lookup hashes 44 bytes, not the kilobytes of a token.
func tokenKey(token string) string {
	return token[max(len(token)-44, 0):]
}

// cookieKey is what a sealed cookie value is cached by: its first 44
// characters, 33 bytes that hold the seal's random 12-byte nonce, so
// that two cookies sealed apart never share it, and a lookup hashes 44
// bytes, not the kilobytes of a session (a forged value with the same
// start is compared whole, and never cached: only opened values are).
func cookieKey(value string) string {
	return value[:min(len(value), 44)]
}

func (c *Cache[T]) put(key string, e *cached[T], now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.size.Load() >= int64(c.max) {
		c.entries.Range(func(k, v any) bool {
			if !now.Before(v.(*cached[T]).expires) {
				c.delete(k)
			}
			return true
		})
		c.entries.Range(func(k, _ any) bool {
			if c.size.Load() < int64(c.max/2) {
				return false
			}
			c.delete(k)
			return true
		})
	}
	if _, loaded := c.entries.Swap(key, e); !loaded {
		c.size.Add(1)
	}
}

// delete removes an entry, counting it (under mu).
func (c *Cache[T]) delete(key any) {
	if _, loaded := c.entries.LoadAndDelete(key); loaded {
		c.size.Add(-1)
	}
}
