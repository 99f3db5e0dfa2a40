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

	"github.com/caddy-b2c/caddy-b2c/b2cauth/oidcprovider"
	"github.com/caddy-b2c/caddy-b2c/b2cauth/session"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

// refresh answers /.auth/refresh: it renews the session's tokens with its
// refresh token, against the policy that issued them.
func (h *Handler) refresh(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	id, _, err := h.readSession(r, h.now())
	if err != nil {
		return sessionStoreDown(h.logger, w, r, err)
	}
	if id == nil || id.session.RefreshToken == "" {
		return fail(w, r, http.StatusUnauthorized, "Cannot refresh", "There is no session with a refresh token.", errors.New("refresh without refresh token"))
	}
	s, err := h.renew(r.Context(), id)
	if err != nil {
		switch outcome := oidcprovider.RefreshOutcome(err); outcome {
		case "refused", "interaction_required":
			countRefresh(outcome)
			h.endRefusedSession(w, r, id, err)
			return fail(w, r, http.StatusUnauthorized, "Signed out", "The identity provider ended this session. Sign in again.", err)
		default:
			countRefresh("failed")
			h.logger.Warn("token refresh failed", zap.String("user_id", id.id), zap.Error(err))
			if errors.Is(err, oidcprovider.ErrUnavailable) {
				return unavailable(h.logger, w, r, err)
			}
			return fail(w, r, http.StatusBadGateway, "Cannot refresh", "The identity provider could not renew the session now.", err)
		}
	}
	countRefresh("renewed")
	if err := h.sessions.write(w, r, s, nil); err != nil {
		return sessionNotKept(h.logger, w, r, "Cannot refresh", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// renew redeems a session's refresh token against the policy that issued
// it and returns the same session with the new tokens. The new ID token
// must pass every check and name the same user.
func (h *Handler) renew(ctx context.Context, id *identity) (*session.Session, error) {
	p, policy := h.idp.sealedProvider(id.session.Policy)
	d, err := p.Get(ctx)
	if err != nil {
		return nil, err
	}
	tr, err := h.idp.redeem(ctx, d, url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {id.session.RefreshToken},
		"scope":         {strings.Join(h.Scopes, " ")},
	})
	if err != nil {
		return nil, err
	}
	payload, err := h.idp.verifyIDToken(ctx, d, tr.IDToken, "", tr.AccessToken)
	if err != nil {
		return nil, fmt.Errorf("renewed id token refused: %w", err)
	}
	if nid, ok := h.identity(payload); !ok || nid.id != id.id {
		return nil, errors.New("the renewed token names another user")
	}
	s := h.sessions.start(tr, policy, payload)
	s.ID, s.Issued, s.Expires, s.Ref = id.session.ID, id.session.Issued, id.session.Expires, id.session.Ref // the same session, renewed
	if s.UserInfo = h.idp.userInfo(ctx, d, tr, payload); s.UserInfo == nil {
		s.UserInfo = id.session.UserInfo
	}
	h.groups.forSession(ctx, s, orNil(h.identity(payload)), id.session)
	if s.RefreshToken == "" && h.sessions.keeps("refresh") {
		s.RefreshToken = id.session.RefreshToken
	}
	return s, nil
}

// endRefusedSession ends a session whose refresh the provider refused: the
// cookie goes, and so does every copy of it.
func (h *Handler) endRefusedSession(w http.ResponseWriter, r *http.Request, id *identity, cause error) {
	h.logger.Info("session ended: the provider refused to renew it", zap.String("user_id", id.id), zap.Error(cause))
	clearSession(w, r)
	h.sessions.drop(r.Context(), id.session)
	if err := h.revoke(r.Context(), id, false, "provider"); err != nil {
		h.logger.Error("sign-out not recorded in storage", zap.String("user_id", id.id), zap.Error(err))
	}
}

// refreshMargin is how long before its access token (or, without one, its
// ID token) expires a session is renewed on a request.
const refreshMargin = 5 * time.Minute

// signInLoopWindow: a provider that asks for interaction again this soon
// after a sign-in is not satisfied by one (a Conditional Access block):
// the user gets a page instead of another round trip.
const signInLoopWindow = 2 * time.Minute

// Backoff after a failed renewal, per session on an instance: the first
// retry after renewalBackoff, doubling up to maxRenewalBackoff.
const (
	renewalBackoff    = 10 * time.Second
	maxRenewalBackoff = 5 * time.Minute
)

// errBackoff is a renewal not tried: an earlier one failed moments ago.
var errBackoff = errors.New("renewal not retried yet: the last one failed")

// renewals makes concurrent requests with the same session tokens share
// one renewal, lets a request that still carries the old cookie just after
// a renewal use its result instead of renewing again, and spaces the
// retries of a failing one. All are keyed by the refresh token renewed
// (its hash), so a later cookie renews anew. Nothing is read from storage.
type renewals struct {
	group singleflight.Group

	mu      sync.Mutex
	recent  map[string]recentRenewal
	failing map[string]failedRenewal
}

type recentRenewal struct {
	s    *session.Session
	seen time.Time
}

// failedRenewal is a session whose renewal failed: no grant before next.
type failedRenewal struct {
	failures int
	next     time.Time
}

// recentWindow is how long a renewal's result serves requests that still
// carry the cookie it replaced.
const recentWindow = 30 * time.Second

// maxRenewalEntries bounds each map of renewals.
const maxRenewalEntries = 4096

// do renews the session holding this refresh token once, whoever asks, and
// not again before its backoff has passed when it failed.
func (rn *renewals) do(refreshToken string, now time.Time, renew func() (*session.Session, error)) (*session.Session, error) {
	sum := sha256.Sum256([]byte(refreshToken))
	key := string(sum[:])
	rn.mu.Lock()
	if r, ok := rn.recent[key]; ok && now.Sub(r.seen) < recentWindow {
		rn.mu.Unlock()
		return r.s, nil
	}
	if f, ok := rn.failing[key]; ok && now.Before(f.next) {
		rn.mu.Unlock()
		return nil, errBackoff
	}
	rn.mu.Unlock()
	v, err, _ := rn.group.Do(key, func() (any, error) {
		s, err := renew()
		rn.mu.Lock()
		defer rn.mu.Unlock()
		if err != nil {
			if oidcprovider.RefreshOutcome(err) == "failed" {
				f := rn.failing[key]
				f.failures++
				f.next = now.Add(min(renewalBackoff<<(f.failures-1), maxRenewalBackoff))
				pruneRenewals(rn.failing, func(f failedRenewal) bool { return now.After(f.next.Add(maxRenewalBackoff)) })
				if len(rn.failing) < maxRenewalEntries {
					rn.failing[key] = f
				}
			}
			return nil, err
		}
		delete(rn.failing, key)
		pruneRenewals(rn.recent, func(r recentRenewal) bool { return now.Sub(r.seen) >= recentWindow })
		if len(rn.recent) < maxRenewalEntries {
			rn.recent[key] = recentRenewal{s, now}
		}
		return s, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*session.Session), nil
}

// pruneRenewals drops the stale entries of a full map.
func pruneRenewals[V any](m map[string]V, stale func(V) bool) {
	if len(m) < maxRenewalEntries/2 {
		return
	}
	for k, v := range m {
		if stale(v) {
			delete(m, k)
		}
	}
}

// tokenExpiry is when the session's access token (else its ID token)
// expires; zero when unknown.
func (id *identity) tokenExpiry() time.Time {
	if exp := id.accessExpiry(); !exp.IsZero() {
		return exp
	}
	v, err := strconv.ParseInt(id.values["exp"], 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.Unix(v, 0)
}

// nearExpiry tells whether a session's tokens expire within the margin.
func nearExpiry(id *identity, now time.Time) bool {
	exp := id.tokenExpiry()
	return !exp.IsZero() && !now.Add(refreshMargin).Before(exp)
}

// reauthVar carries, from the renewal that failed to the reply, why the
// request must sign in again: a claims challenge to pass on, or a block.
const reauthVar = "b2c_auth.reauth"

// reauth is why a session's user must sign in again, and who they were.
type reauth struct {
	claims    string // the provider's claims challenge, for /authorize
	blocked   bool   // asked again right after a sign-in: do not loop
	loginHint string // the account, for the provider's sign-in page
}

// loginHint names the account for a re-authentication: Entra's login_hint
// claim (its optional claim made for this: "Apps can use this parameter
// during reauthentication"), else the sign-in name or e-mail address.
func (id *identity) loginHint() string {
	for _, claim := range []string{"login_hint", "preferred_username", "email"} {
		if v := id.values[claim]; v != "" && !strings.Contains(v, ",") {
			return v
		}
	}
	return ""
}

// accessBlockedPage says a sign-in did not satisfy the provider's access
// policy: it asked for another one at once.
var accessBlockedPage = pageData{Title: "Access blocked", Message: "Your organization's access policy did not accept this sign-in: the identity provider asked for another one at once. Ask your administrator, or try again later.", Link: "/.auth/login", LinkText: "Sign in again"}

// autoRenew renews a session whose tokens are about to expire, on the
// request that notices, and sets the new cookie. It returns the identity
// to use: the renewed one; the current one while its tokens live and a
// failed renewal can be retried; or nil, signed out, when the provider
// refused (invalid_grant), wants the user back at /authorize
// (interaction_required and kin: Conditional Access), or the renewal
// failed and the tokens have expired.
func (h *Handler) autoRenew(w http.ResponseWriter, r *http.Request, id *identity, now time.Time) *identity {
	s, err := h.renewals.do(id.session.RefreshToken, now, func() (*session.Session, error) { return h.renew(r.Context(), id) })
	if err != nil {
		switch outcome := oidcprovider.RefreshOutcome(err); {
		case outcome == "refused":
			countRefresh("refused")
			h.endRefusedSession(w, r, id, err)
			caddyhttp.SetVar(r.Context(), reauthVar, reauth{loginHint: id.loginHint()})
			return nil
		case outcome == "interaction_required":
			var pe *oidcprovider.Error
			errors.As(err, &pe)
			again := reauth{claims: pe.Claims, loginHint: id.loginHint()}
			if now.Sub(time.UnixMilli(id.session.Issued)) < signInLoopWindow {
				again.blocked = true
				countRefresh("blocked")
			} else {
				countRefresh("interaction_required")
			}
			h.endRefusedSession(w, r, id, err)
			caddyhttp.SetVar(r.Context(), reauthVar, again)
			return nil
		case errors.Is(err, errBackoff):
			countRefresh("backoff")
		default:
			countRefresh("failed")
			h.logger.Warn("token renewal failed; retried with backoff", zap.String("user_id", id.id), zap.Error(err))
		}
		if !now.Before(id.tokenExpiry()) {
			// Served on dead tokens no longer: a new sign-in it is.
			countRefresh("expired")
			if ce := h.logger.Check(zap.InfoLevel, "session tokens expired and not renewed; signing in again"); ce != nil {
				ce.Write(zap.String("user_id", id.id))
			}
			caddyhttp.SetVar(r.Context(), reauthVar, reauth{loginHint: id.loginHint()})
			return nil
		}
		return id
	}
	countRefresh("renewed")
	payload, err := s.Payload()
	if err != nil {
		return id
	}
	renewed, ok := h.identity(withUserInfo(payload, s.UserInfo))
	if !ok {
		return id
	}
	if err := h.sessions.write(w, r, s, renewed); err != nil {
		h.logger.Warn("renewed session not kept; the current one goes on", zap.String("user_id", id.id), zap.Error(err))
		return id
	}
	return renewed
}
