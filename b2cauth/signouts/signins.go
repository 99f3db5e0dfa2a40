package signouts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"
)

// Sign-in records: the provider session IDs (`sid`) that have a session
// here, so that front-channel logout revokes only sessions that exist and
// a flood of made-up sids writes nothing. A record is kept under the hash
// of its sid and says when its session ends; an index entry under the hour
// it ends lets the sync prune ended ones without listing the live ones.

func sidHash(sid string) string {
	sum := sha256.Sum256([]byte(sid))
	return hex.EncodeToString(sum[:16])
}

// signInRecord is what a sign-in record holds.
type signInRecord struct {
	Expires int64 `json:"expires"` // Unix seconds
}

// RecordSignIn notes a provider sid at sign-in, until expires.
func (st *Store) RecordSignIn(ctx context.Context, sid string, expires time.Time) error {
	hash := sidHash(sid)
	data, _ := json.Marshal(signInRecord{Expires: expires.Unix()})
	storage, _ := st.store()
	if err := storage.Store(ctx, path.Join(signInDir, hash), data); err != nil {
		return err
	}
	storage, _ = st.store()
	return storage.Store(ctx, path.Join(signInExpiryDir, strconv.FormatInt(expires.Unix()/3600, 10), hash), nil)
}

// KnownSignIn tells whether a provider sid has a live session here: one
// storage read, whatever the number of sign-ins.
func (st *Store) KnownSignIn(ctx context.Context, sid string) (bool, error) {
	hash, now := sidHash(sid), st.now().Unix()
	storage, _ := st.store()
	data, err := storage.Load(ctx, path.Join(signInDir, hash))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var rec signInRecord
	return json.Unmarshal(data, &rec) == nil && rec.Expires > now, nil
}

// pruneSignIns deletes, once an hour, the sign-in records that ended in
// the hours gone by: it lists the index's hours (a few per session
// lifetime), then only the ended ones.
func (st *Store) pruneSignIns(ctx context.Context, now int64) {
	hour := now / 3600
	st.mu.Lock()
	due := st.prunedHour != hour
	st.prunedHour = hour
	st.mu.Unlock()
	if !due {
		return
	}
	storage, _ := st.store()
	hours, err := storage.List(ctx, signInExpiryDir, false)
	if err != nil {
		return
	}
	for _, dir := range hours {
		if h, err := strconv.ParseInt(path.Base(dir), 10, 64); err != nil || h >= hour {
			continue
		}
		storage, _ = st.store()
		entries, err := storage.List(ctx, dir, false)
		if err != nil {
			continue
		}
		for _, e := range entries {
			record := path.Join(signInDir, path.Base(e))
			storage, _ = st.store()
			// A later sign-in of the same sid may have extended the record.
			if data, err := storage.Load(ctx, record); err == nil {
				var rec signInRecord
				if json.Unmarshal(data, &rec) == nil && rec.Expires > now {
					st.deleteKey(ctx, e)
					continue
				}
			}
			st.deleteKey(ctx, record)
			st.deleteKey(ctx, e)
		}
		st.deleteKey(ctx, dir)
	}
}

// ValidSID tells the shape a provider session ID may have: printable ASCII
// without spaces, at most 256 characters.
func ValidSID(sid string) bool {
	if sid == "" || len(sid) > 256 {
		return false
	}
	return !strings.ContainsFunc(sid, func(c rune) bool { return c <= ' ' || c > '~' })
}
