package b2cauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"strconv"
	"time"
)

// session_store storage, as the handler sees it: since when it is the
// store, and whose sessions a record is.

// storedSinceKey is where Caddy's storage keeps when an app's sessions
// moved to storage (Unix seconds), which bounds how long cookies holding a
// whole session are still accepted.
func storedSinceKey(app string) string { return "b2c_auth/session_store_since/" + app }

// noteSessionStore records, for session_store storage, since when it is
// the store (kept if already recorded), and for cookie, that it is not.
func (h *Handler) noteSessionStore(ctx context.Context, app string) error {
	key := storedSinceKey(app)
	if h.SessionStore != "storage" {
		if err := h.storage.Delete(ctx, key); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	data, err := h.storage.Load(ctx, key)
	if err == nil {
		if since, err := strconv.ParseInt(string(data), 10, 64); err == nil {
			h.storedSince = time.Unix(since, 0)
			return nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	h.storedSince = h.now()
	return h.storage.Store(ctx, key, []byte(strconv.FormatInt(h.storedSince.Unix(), 10)))
}

// storedUser names a user's index of stored sessions: a hash of the app
// and the user's ID, which storage shows instead of either.
func (h *Handler) storedUser(id *identity) string {
	sum := sha256.Sum256([]byte(h.sessionPurpose + "|" + id.id))
	return hex.EncodeToString(sum[:16])
}
