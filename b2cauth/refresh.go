package b2cauth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

// refresh answers /.auth/refresh: it renews the session's tokens with its
// refresh token, against the policy that issued them.
func (h *Handler) refresh(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	id := h.readSession(nil, r)
	if id == nil || id.session.RefreshToken == "" {
		return h.fail(w, r, http.StatusUnauthorized, "Cannot refresh", "There is no session with a refresh token.", errors.New("refresh without refresh token"))
	}
	s, err := h.renew(r.Context(), id)
	if err != nil {
		if errors.Is(err, errUnavailable) {
			return h.unavailable(w, r, err)
		}
		h.logger.Info("token refresh refused", zap.String("user_id", id.id), zap.Error(err))
		if grantRefused(err) {
			// The provider no longer backs the session (AADB2C90129 revoked,
			// 90080 expired, 90128 account deleted): end it here too.
			h.endRefusedSession(w, r, id)
			return h.fail(w, r, http.StatusUnauthorized, "Signed out", "The identity provider ended this session. Sign in again.", err)
		}
		return h.fail(w, r, http.StatusUnauthorized, "Cannot refresh", "The identity provider refused to renew the session.", err)
	}
	if err := h.writeSession(w, r, s); err != nil {
		return h.fail(w, r, http.StatusBadGateway, "Cannot refresh", "The session is too large to keep in cookies.", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// renew redeems a session's refresh token against the policy that issued
// it and returns the same session with the new tokens. The new ID token
// must pass every check and name the same user.
func (h *Handler) renew(ctx context.Context, id *identity) (*session, error) {
	p, policy := h.provider(id.session.Policy)
	d, err := p.get(ctx)
	if err != nil {
		return nil, err
	}
	tr, err := h.redeem(ctx, d, url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {id.session.RefreshToken},
		"scope":         {strings.Join(h.Scopes, " ")},
	})
	if err != nil {
		return nil, err
	}
	payload, err := h.verifyIDToken(ctx, d, tr.IDToken, "", tr.AccessToken)
	if err != nil {
		return nil, fmt.Errorf("renewed id token refused: %w", err)
	}
	if nid, ok := h.identity(payload); !ok || nid.id != id.id {
		return nil, errors.New("the renewed token names another user")
	}
	s := h.newSession(tr, policy)
	s.ID, s.Issued, s.Expires = id.session.ID, id.session.Issued, id.session.Expires // the same session, renewed
	if s.UserInfo = h.userInfo(ctx, d, tr, payload); s.UserInfo == nil {
		s.UserInfo = id.session.UserInfo
	}
	if s.RefreshToken == "" {
		s.RefreshToken = id.session.RefreshToken
	}
	return s, nil
}

// grantRefused tells whether the provider refused a refresh token for good
// (invalid_grant), as opposed to a passing failure.
func grantRefused(err error) bool {
	var pe *providerError
	return errors.As(err, &pe) && pe.Code == "invalid_grant"
}

// endRefusedSession ends a session whose refresh token the provider
// refused: the cookie goes, and so does every copy of it.
func (h *Handler) endRefusedSession(w http.ResponseWriter, r *http.Request, id *identity) {
	clearSession(w, r)
	if err := h.revoke(r.Context(), id, false); err != nil {
		h.logger.Error("sign-out not recorded in storage", zap.String("user_id", id.id), zap.Error(err))
	}
}

// refreshMargin is how long before its access token (or, without one, its
// ID token) expires a session is renewed on a request.
const refreshMargin = 5 * time.Minute

// renewals makes concurrent requests with the same session tokens share
// one renewal, and lets a request that still carries the old cookie just
// after a renewal use its result instead of renewing again. Both are keyed
// by the refresh token renewed (its hash), so a later cookie renews anew.
type renewals struct {
	group singleflight.Group

	mu     sync.Mutex
	recent map[string]recentRenewal
}

type recentRenewal struct {
	s    *session
	seen time.Time
}

// recentWindow is how long a renewal's result serves requests that still
// carry the cookie it replaced.
const recentWindow = 30 * time.Second

// do renews the session holding this refresh token once, whoever asks.
func (rn *renewals) do(refreshToken string, now time.Time, renew func() (*session, error)) (*session, error) {
	sum := sha256.Sum256([]byte(refreshToken))
	key := string(sum[:])
	rn.mu.Lock()
	if r, ok := rn.recent[key]; ok && now.Sub(r.seen) < recentWindow {
		rn.mu.Unlock()
		return r.s, nil
	}
	rn.mu.Unlock()
	v, err, _ := rn.group.Do(key, func() (any, error) {
		s, err := renew()
		if err == nil {
			rn.mu.Lock()
			for id, r := range rn.recent { // bounded: only the last window's
				if now.Sub(r.seen) >= recentWindow {
					delete(rn.recent, id)
				}
			}
			if len(rn.recent) < 4096 {
				rn.recent[key] = recentRenewal{s, now}
			}
			rn.mu.Unlock()
		}
		return s, err
	})
	if err != nil {
		return nil, err
	}
	return v.(*session), nil
}

// nearExpiry tells whether a session's tokens expire within the margin.
func (h *Handler) nearExpiry(id *identity, now time.Time) bool {
	exp := id.accessExpiry()
	if exp.IsZero() {
		v, err := strconv.ParseInt(id.values["exp"], 10, 64)
		if err != nil {
			return false
		}
		exp = time.Unix(v, 0)
	}
	return !now.Add(refreshMargin).Before(exp)
}

// autoRenew renews a session whose tokens are about to expire, on the
// request that notices, and sets the new cookie. It returns the identity
// to use: the renewed one, the current one while a failed renewal can be
// retried, or nil when the provider refused it for good (signed out).
func (h *Handler) autoRenew(w http.ResponseWriter, r *http.Request, id *identity) *identity {
	s, err := h.renewals.do(id.session.RefreshToken, h.now(), func() (*session, error) { return h.renew(r.Context(), id) })
	if err != nil {
		if grantRefused(err) {
			h.logger.Info("session ended: the provider refused to renew it", zap.String("user_id", id.id), zap.Error(err))
			h.endRefusedSession(w, r, id)
			return nil
		}
		h.logger.Warn("token renewal failed; the current tokens stay in use", zap.String("user_id", id.id), zap.Error(err))
		return id
	}
	payload, err := jwtPayload(s.IDToken)
	if err != nil {
		return id
	}
	renewed, ok := h.identity(withUserInfo(payload, s.UserInfo))
	if !ok {
		return id
	}
	renewed.session, renewed.expires = s, time.Unix(s.Expires, 0)
	if err := h.writeSession(w, r, s); err != nil {
		h.logger.Warn("renewed session too large for cookies", zap.String("user_id", id.id), zap.Error(err))
		return id
	}
	return renewed
}
