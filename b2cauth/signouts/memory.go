package signouts

import (
	"sync"
	"sync/atomic"
	"time"
)

// What an instance holds in memory: the set every request reads, and the
// entries ordered by when they may be forgotten.

// userRevocation is a user's newest "everywhere".
type userRevocation struct{ before, expires int64 }

// revokedSet is what is revoked, read without locks on every request:
// the values are when the entries expire, so that an older entry that
// expires never removes a newer one of the same session, sid or user.
type revokedSet struct {
	sessions sync.Map // session ID → expires
	sids     sync.Map // provider sid → expires
	users    sync.Map // user ID → userRevocation
	size     atomic.Int64
}

// revoked tells whether a session is revoked: by its ID, its user's
// "everywhere" or its provider session.
func (rs *revokedSet) revoked(sessionID, userID, sid string, issuedMs int64) bool {
	if rs.size.Load() == 0 {
		return false
	}
	if _, ok := rs.sessions.Load(sessionID); ok {
		return true
	}
	if rs.userRevoked(userID, issuedMs) {
		return true
	}
	if sid != "" {
		if _, ok := rs.sids.Load(sid); ok {
			return true
		}
	}
	return false
}

// userRevoked tells whether the user signed out everywhere after issuedMs.
func (rs *revokedSet) userRevoked(userID string, issuedMs int64) bool {
	if rs.size.Load() == 0 {
		return false
	}
	v, ok := rs.users.Load(userID)
	return ok && issuedMs < v.(userRevocation).before
}

// add records an entry.
func (rs *revokedSet) add(e Entry) {
	switch e.Kind {
	case KindSession:
		storeLater(&rs.sessions, e.Value, e.Expires, &rs.size)
	case KindSID:
		storeLater(&rs.sids, e.Value, e.Expires, &rs.size)
	case KindUser:
		next := userRevocation{e.Before, e.Expires}
		for {
			old, loaded := rs.users.LoadOrStore(e.Value, next)
			if !loaded {
				rs.size.Add(1)
				return
			}
			if o := old.(userRevocation); o.before >= next.before || rs.users.CompareAndSwap(e.Value, old, next) {
				return
			}
		}
	}
}

// storeLater keeps the latest expiry of a key.
func storeLater(m *sync.Map, key string, expires int64, size *atomic.Int64) {
	for {
		old, loaded := m.LoadOrStore(key, expires)
		if !loaded {
			size.Add(1)
			return
		}
		if old.(int64) >= expires || m.CompareAndSwap(key, old, expires) {
			return
		}
	}
}

// remove forgets an expired entry, unless a later one of the same key
// replaced it.
func (rs *revokedSet) remove(e Entry) {
	var gone bool
	switch e.Kind {
	case KindSession:
		gone = rs.sessions.CompareAndDelete(e.Value, e.Expires)
	case KindSID:
		gone = rs.sids.CompareAndDelete(e.Value, e.Expires)
	case KindUser:
		gone = rs.users.CompareAndDelete(e.Value, userRevocation{e.Before, e.Expires})
	}
	if gone {
		rs.size.Add(-1)
	}
}

// expiring is a live entry in the expiry heap.
type expiring struct {
	entry  Entry
	bucket int64
}

// key is where the entry is stored (computed, not kept: memory per entry
// is what a large sign-out list costs).
func (x expiring) key() string {
	return x.entry.keyAt(time.Unix(x.bucket*int64(signOutBucket/time.Second), 0))
}

// expiryHeap orders live entries by expiry (container/heap).
type expiryHeap []expiring

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].entry.Expires < h[j].entry.Expires }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiring)) }
func (h *expiryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
