package b2cauth

import (
	"sync"
	"time"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/session"
)

// identityCache remembers identities by the exact cookie value or token
// they came from (compared whole, so no collision can pass one user off as
// another), until they expire. It is bounded: when full, it drops expired
// entries, then half of the rest.
type identityCache struct {
	mu      sync.RWMutex
	max     int
	entries map[string]*identity
}

func newIdentityCache(max int) *identityCache {
	return &identityCache{max: max, entries: make(map[string]*identity)}
}

func (c *identityCache) get(key string, now time.Time) *identity {
	c.mu.RLock()
	id := c.entries[key]
	c.mu.RUnlock()
	if id == nil || !now.Before(id.expires) {
		return nil
	}
	return id
}

// getChunked is get for a session cookie's value still in chunks: the
// entry is found by the first chunk and must match the value whole.
func (c *identityCache) getChunked(v *session.Chunked, now time.Time) *identity {
	c.mu.RLock()
	id := c.entries[v.First()]
	c.mu.RUnlock()
	if id == nil || !now.Before(id.expires) || !v.Equals(id.cacheKey) {
		return nil
	}
	return id
}

// putCookie caches a session cookie's identity for getChunked: under the
// value's first chunk, the whole value kept to compare.
func (c *identityCache) putCookie(value string, id *identity, now time.Time) {
	id.cacheKey = value
	c.put(value[:min(len(value), session.ChunkSize)], id, now)
}

// put caches an identity under key; now decides which entries have
// expired when the cache is full.
func (c *identityCache) put(key string, id *identity, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for k, v := range c.entries {
			if !now.Before(v.expires) {
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
	c.entries[key] = id
}
