package session

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"time"
)

// Each user's stored sessions are bounded: an index per user names the
// records of their live sessions, so that a client replaying single
// sign-on cannot fill the storage. It is filed like the records, under a
// bucket of the time its newest session ends
// (b2c_auth/sessions/users/<bucket seconds>/<bucket>/<user>), so that an
// index whose sessions have all ended goes with the sweep, and finding it
// at a sign-in reads at most a few buckets whatever the session lifetime.

// usersDir holds the user indexes.
const usersDir = Dir + "/users"

// Bounds per user.
const (
	// MaxLive is how many stored sessions one user keeps: a sign-in past
	// it drops the oldest.
	MaxLive = 20
	// MaxPerMinute is how many sign-ins one user makes a minute.
	MaxPerMinute = 10
)

// ErrTooManySignIns is a sign-in past MaxPerMinute.
var ErrTooManySignIns = errors.New("too many sign-ins of this user in the last minute")

// userIndex is a user's live stored sessions.
type userIndex struct {
	Sessions []indexEntry `json:"s"`
}

type indexEntry struct {
	Record  string `json:"r"` // the record's storage key (it opens nothing)
	Issued  int64  `json:"i"`
	Expires int64  `json:"e"`
}

// bucketWidth is the span of a users bucket, in seconds: a whole number of
// hours near an eighth of the session lifetime, so that a sign-in looks in
// about nine buckets.
func bucketWidth(lifetime time.Duration) int64 {
	return max(int64(lifetime/time.Hour)/8, 1) * 3600
}

func indexKey(width, bucket int64, user string) string {
	return path.Join(usersDir, strconv.FormatInt(width, 10), strconv.FormatInt(bucket, 10), user)
}

// Admit records a new session (its secret and end) of a user (a name the
// caller derives, such as a hash of the app and user ID) at now (Unix
// seconds): it refuses with ErrTooManySignIns past MaxPerMinute, and
// deletes the records of the oldest sessions past MaxLive. Instances do
// not lock one another: two sign-ins of one user at the same moment may
// each miss the other, so the bounds hold to within a few.
func (st *Store) Admit(ctx context.Context, user string, secret []byte, expires, now int64, lifetime time.Duration) error {
	record, _, err := keyOf(secret, expires)
	if err != nil {
		return err
	}
	width := bucketWidth(lifetime)
	var index userIndex
	var found []string
	for b := now / width; b <= (now+int64(lifetime/time.Second))/width+1; b++ {
		key := indexKey(width, b, user)
		data, err := st.Storage.Load(ctx, key)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		var part userIndex
		if json.Unmarshal(data, &part) == nil {
			index.Sessions = append(index.Sessions, part.Sessions...)
		}
		found = append(found, key)
	}
	index.Sessions = slices.DeleteFunc(index.Sessions, func(e indexEntry) bool { return e.Expires <= now })
	recent := 0
	for _, e := range index.Sessions {
		if now-e.Issued < 60 {
			recent++
		}
	}
	if recent >= MaxPerMinute {
		return ErrTooManySignIns
	}
	index.Sessions = append(index.Sessions, indexEntry{Record: record, Issued: now, Expires: expires})
	slices.SortFunc(index.Sessions, func(a, b indexEntry) int { return int(a.Issued - b.Issued) })
	for len(index.Sessions) > MaxLive {
		if err := st.Storage.Delete(ctx, index.Sessions[0].Record); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		index.Sessions = index.Sessions[1:]
	}
	last := slices.MaxFunc(index.Sessions, func(a, b indexEntry) int { return int(a.Expires - b.Expires) }).Expires
	key := indexKey(width, last/width, user)
	data, _ := json.Marshal(index)
	if err := st.Storage.Store(ctx, key, data); err != nil {
		return err
	}
	for _, old := range found {
		if old != key {
			_ = st.Storage.Delete(ctx, old)
		}
	}
	return nil
}
