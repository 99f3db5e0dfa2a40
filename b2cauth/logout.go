package b2cauth

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/oidcprovider"
	"github.com/caddy-b2c/caddy-b2c/b2cauth/session"
	"github.com/caddy-b2c/caddy-b2c/b2cauth/signouts"
)

// A sign-out on its way through the provider's end_session lives in a
// short-lived encrypted cookie named after its state, as a sign-in does: the
// provider sends the browser back to the redirect path (the one URI the app
// registration needs) with that state, and the cookie says where to go next.
const (
	logoutCookiePrefix = "b2c_logout_"
	logoutPurpose      = "b2c_logout"
	frontChannelPath   = "/.auth/logout/frontchannel"
)

// pendingLogout is a sign-out waiting for the provider's return.
type pendingLogout struct {
	State   string `json:"s"`
	Return  string `json:"r"`
	Created int64  `json:"t"` // Unix nanoseconds, to order a browser's sign-outs
}

// logout ends the session here and on every instance sharing the storage
// (with ?everywhere=1, every session of the user issued until now), then
// sends the browser through the provider's end_session and, by the redirect
// path, on to post_logout_redirect_uri.
func (h *Handler) logout(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	target := safeReturnURL(q.Get("post_logout_redirect_uri"))
	everywhere := q.Get("everywhere") == "1" || q.Get("everywhere") == "true"
	w.Header().Set("Cache-Control", "no-store")
	if everywhere && !fromOwnPage(r, h.origin(r)) {
		// Another site, a sibling subdomain or an old browser's link may not
		// sign a user out of every device: the user confirms on our page.
		h.logger.Info("sign-out everywhere refused: not from this site")
		return renderPage(w, http.StatusForbidden, pageData{
			Title: "Sign out everywhere?", Message: "This ends your sessions on every device. Confirm to go on.",
			FormAction: r.URL.RequestURI(), FormButton: "Sign out everywhere", Link: "/", LinkText: "Cancel",
		})
	}

	id, _, _ := h.readSession(r, h.now()) // storage down: the cookie goes all the same
	clearSession(w, r)
	if id != nil {
		h.sessions.drop(r.Context(), id.session)
		if err := h.revoke(r.Context(), id, everywhere, "user"); err != nil {
			h.logger.Error("sign-out not recorded in storage", zap.String("user_id", id.id), zap.Error(err))
			if everywhere {
				return fail(w, r, http.StatusServiceUnavailable, "Sign-out incomplete", "You are signed out in this browser, but your other sessions could not be ended. Try again in a moment.", err)
			}
		}
		h.logger.Info("user signed out", zap.String("user_id", id.id), zap.Bool("everywhere", everywhere))
	}

	policy := h.Policy
	if id != nil && id.session.Policy != "" {
		policy = id.session.Policy
	}
	p, _ := h.idp.sealedProvider(policy)
	d, err := p.Get(r.Context())
	var u *url.URL
	if err == nil && d.Meta.EndSessionEndpoint != "" {
		u, err = url.Parse(d.Meta.EndSessionEndpoint)
	}
	if u == nil || err != nil { // no end_session to go through: straight back
		http.Redirect(w, r, target, http.StatusFound)
		return nil
	}

	pl := pendingLogout{State: randomString(), Return: target, Created: h.now().UnixNano()}
	prunePending(h.codec, w, r, logoutCookiePrefix, logoutPurpose)
	data, _ := json.Marshal(pl)
	c := session.Cookie(r, logoutCookiePrefix+pl.State[:16])
	c.Value = h.codec.Seal(data, logoutPurpose)
	c.MaxAge = int(flowLifetime.Seconds())
	http.SetCookie(w, &c)

	params := u.Query() // keeps B2C's ?p=<policy>
	params.Set("post_logout_redirect_uri", h.redirectURI(r))
	params.Set("state", pl.State)
	// With application-scoped SSO, B2C ends its session only for a known
	// client: always say which.
	params.Set("client_id", h.ClientID)
	hint := h.logoutHint(r.Context(), id)
	if hint != "" {
		params.Set("id_token_hint", hint)
	}
	if id != nil && id.values["login_hint"] != "" {
		// Entra ID signs the account out without asking which one, given
		// the ID token's optional login_hint claim.
		params.Set("logout_hint", id.values["login_hint"])
	}
	if hint == "" && id != nil && h.platform.b2c {
		// The ID token expired and could not be renewed. A B2C tenant that
		// requires id_token_hint would strand the user on AADB2C90272:
		// say what is done and what may not be, and let them choose.
		h.logger.Info("sign-out without id_token_hint: the ID token expired and could not be renewed", zap.String("user_id", id.id))
		u.RawQuery = params.Encode()
		return renderPage(w, http.StatusOK, pageData{
			Title: "Signed out of this site",
			Message: "You are signed out here. Your sign-in at the identity provider is too old to be named in a sign-out request, so it may still be active there until you close the browser. " +
				"You can ask it to end that sign-in too (some tenants refuse a request that does not name it).",
			Link: u.String(), LinkText: "Sign out at the identity provider too",
			OtherLink: target, OtherLinkText: "Continue",
		})
	}
	// A self-submitting GET form rather than a redirect: the ID token in
	// the URL must not reach Caddy's access log through a Location header.
	u.RawQuery = ""
	return renderAutoSubmit(w, http.MethodGet, u.String(), params)
}

// fromOwnPage tells whether a request comes from a page of this site (at
// origin): the
// browser says so (Sec-Fetch-Site: same-origin), or it is a POST whose
// Origin is the site's. A same-site subdomain is another site here.
func fromOwnPage(r *http.Request, origin string) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin"
	}
	return r.Method == http.MethodPost && r.Header.Get("Origin") == origin
}

// logoutHint is a live ID token for end_session's id_token_hint, or "".
// B2C refuses an expired hint (AADB2C90208), and tenants that require one
// refuse a logout without it (AADB2C90272); ID tokens live an hour and
// sessions eight, so an expired one is renewed first when it can be.
func (h *Handler) logoutHint(ctx context.Context, id *identity) string {
	if id == nil {
		return ""
	}
	if exp, err := strconv.ParseInt(id.values["exp"], 10, 64); err == nil && time.Unix(exp, 0).After(h.now().Add(oidcprovider.ClockSkew)) && id.session.IDToken != "" {
		return id.session.IDToken
	}
	if id.session.RefreshToken == "" {
		return ""
	}
	s, err := h.renew(ctx, id)
	if err != nil {
		h.logger.Info("could not renew the ID token for sign-out", zap.String("user_id", id.id), zap.Error(err))
		return ""
	}
	return s.IssuedIDToken
}

// revoke records the sign-out of a session, or of every session of its user
// issued until now, for every instance that shares the storage; origin
// (user, front_channel, provider) is counted.
func (h *Handler) revoke(ctx context.Context, id *identity, everywhere bool, origin string) error {
	countRevocation(origin)
	entries := []signouts.Entry{{Kind: signouts.KindSession, Value: id.session.ID, Expires: id.session.Expires}}
	if everywhere {
		entries = append(entries, signouts.UserSignOut(id.userKey, h.now(), time.Duration(h.SessionLifetime)))
	}
	return h.signouts.Add(ctx, entries...)
}

// logoutReturn is the provider's return from end_session to the redirect
// path: on to where the sign-out was asked to lead, or a signed-out page.
func (h *Handler) logoutReturn(w http.ResponseWriter, r *http.Request, state string) error {
	w.Header().Set("Cache-Control", "no-store")
	if statePattern.MatchString(state) {
		base := session.Cookie(r, logoutCookiePrefix+state[:16])
		if c, err := r.Cookie(base.Name); err == nil {
			base.MaxAge = -1
			http.SetCookie(w, &base)
			var pl pendingLogout
			data, ok := h.codec.Open(c.Value, logoutPurpose)
			if ok && json.Unmarshal(data, &pl) == nil && subtle.ConstantTimeCompare([]byte(pl.State), []byte(state)) == 1 &&
				h.now().Sub(time.Unix(0, pl.Created)) <= flowLifetime {
				http.Redirect(w, r, safeReturnURL(pl.Return), http.StatusFound)
				return nil
			}
		}
	}
	return renderPage(w, http.StatusOK, signedOutPage)
}

// signedOutPage says the user has signed out.
var signedOutPage = pageData{Title: "Signed out", Message: "You have signed out.", Link: "/", LinkText: "Home"}

// frontChannelLogout is what the provider loads, in a hidden iframe of its
// sign-out page, to end this site's sessions of a provider session: GET
// with `sid` (and `iss`, which Entra ID leaves out). The iframe is
// cross-site, so usually no session cookie arrives: the sessions are
// revoked in storage by their ID token's `sid`, one storage read to find it
// and one write to revoke it. Whatever it is sent, it clears what it can
// and answers 200, as OpenID Connect Front-Channel Logout expects; only a
// sid that signed in here is revoked, so made-up ones write nothing.
func (h *Handler) frontChannelLogout(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-cache, no-store")
	ctx := r.Context()
	if id, _, _ := h.readSession(r, h.now()); id != nil {
		h.sessions.drop(ctx, id.session)
		if err := h.revoke(ctx, id, false, "front_channel"); err != nil {
			h.logger.Error("sign-out not recorded in storage", zap.String("user_id", id.id), zap.Error(err))
		}
	}
	clearSession(w, r)

	q := r.URL.Query()
	sid, iss := q.Get("sid"), q.Get("iss")
	switch {
	case !signouts.ValidSID(sid):
		h.logger.Debug("front-channel logout without a valid sid")
	case iss != "" && !h.idp.isOurIssuer(ctx, iss):
		h.logger.Warn("front-channel logout from another issuer ignored")
	default:
		known, err := h.signouts.KnownSignIn(ctx, sid)
		if err != nil {
			h.logger.Error("front-channel logout: storage unavailable", zap.Error(err))
			break
		}
		if !known {
			h.logger.Debug("front-channel logout for a sid unknown here")
			break
		}
		entry := signouts.Entry{Kind: signouts.KindSID, Value: sid, Expires: h.now().Add(time.Duration(h.SessionLifetime)).Unix()}
		countRevocation("front_channel")
		if err := h.signouts.Add(ctx, entry); err != nil {
			h.logger.Error("front-channel logout not recorded in storage", zap.Error(err))
			break
		}
		h.logger.Info("front-channel logout")
	}
	return renderPage(w, http.StatusOK, signedOutPage)
}

// isOurIssuer tells whether iss is the issuer of one of the configured
// policies (or of the issuer), discovering them if needed; false when none
// can be discovered now.
func (i *idp) isOurIssuer(ctx context.Context, iss string) bool {
	for _, p := range i.providers {
		if d, err := p.Get(ctx); err == nil && subtle.ConstantTimeCompare([]byte(d.Meta.Issuer), []byte(iss)) == 1 {
			return true
		}
	}
	return false
}
