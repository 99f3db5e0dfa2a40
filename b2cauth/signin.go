package b2cauth

import (
	"cmp"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/oidcprovider"
	"github.com/caddy-b2c/caddy-b2c/b2cauth/session"
	"github.com/caddy-b2c/caddy-b2c/b2cauth/signouts"
	"golang.org/x/oauth2"
)

// A pending sign-in lives in a short-lived encrypted cookie of its own,
// named after its state, so several tabs can sign in at once.
const (
	flowCookiePrefix = "b2c_flow_"
	flowLifetime     = 10 * time.Minute
	maxPending       = 5 // pending sign-ins, and pending sign-outs, per browser
	sessionCookie    = "b2c_session"
	flowPurpose      = "b2c_flow"
)

// flow is a pending sign-in.
type flow struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Policy   string `json:"p"`
	Return   string `json:"r"`
	Created  int64  `json:"t"`           // Unix nanoseconds, to order a browser's flows
	Post     string `json:"f,omitempty"` // a form posted while signed out, to post again after
	// A step-up sign-in: what it asked for, checked on return.
	Need *need `json:"u,omitempty"`
	// For the authorize request, not kept in the cookie: a claims request
	// (Conditional Access, an authentication context), prompt=login and
	// max_age (a recent sign-in).
	Claims string `json:"-"`
	Prompt string `json:"-"`
	MaxAge int    `json:"-"`
}

// statePattern is the shape of the states we make: 32 random bytes, base64url.
var statePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

func randomString() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// startSignIn begins the code flow with PKCE for a policy and sends the
// browser to the provider, with the hints of the allowlist (from the
// /.auth/login query, else the configured defaults).
func (h *Handler) startSignIn(w http.ResponseWriter, r *http.Request, policy, returnURL string, hints url.Values) error {
	return h.startFlow(w, r, flow{Policy: policy, Return: returnURL}, hints)
}

// startFlow starts a sign-in for f (its policy, return URL and any form to
// post again), with fresh state, nonce and PKCE verifier.
func (h *Handler) startFlow(w http.ResponseWriter, r *http.Request, f flow, hints url.Values) error {
	p, policy := h.idp.sealedProvider(f.Policy)
	d, err := p.Get(r.Context())
	if err != nil {
		return unavailable(h.logger, w, r, err)
	}
	f.State, f.Nonce, f.Verifier, f.Policy, f.Created = randomString(), randomString(), oauth2.GenerateVerifier(), policy, h.now().UnixNano()
	prunePending(h.codec, w, r, flowCookiePrefix, flowPurpose)

	data, _ := json.Marshal(f)
	c := session.Cookie(r, flowCookiePrefix+f.State[:16])
	c.Value = h.codec.Seal(data, flowPurpose)
	c.MaxAge = int(flowLifetime.Seconds())
	if h.ResponseMode == "form_post" && secure(r) {
		c.SameSite = http.SameSiteNoneMode // the provider POSTs back cross-site
	}
	http.SetCookie(w, &c)

	u, err := url.Parse(d.Meta.AuthorizationEndpoint)
	if err != nil {
		return unavailable(h.logger, w, r, err)
	}
	q := u.Query() // keeps B2C's ?p=<policy>
	q.Set("client_id", h.ClientID)
	q.Set("response_type", "code")
	q.Set("redirect_uri", h.redirectURI(r))
	q.Set("scope", strings.Join(h.Scopes, " "))
	q.Set("state", f.State)
	q.Set("nonce", f.Nonce)
	q.Set("code_challenge", oauth2.S256ChallengeFromVerifier(f.Verifier))
	q.Set("code_challenge_method", "S256")
	if h.ResponseMode == "form_post" {
		q.Set("response_mode", "form_post")
	}
	for name, value := range h.hints(hints) {
		q.Set(name, value)
	}
	if f.Claims != "" {
		q.Set("claims", f.Claims)
	}
	if f.Prompt != "" {
		q.Set("prompt", f.Prompt)
	}
	if f.MaxAge > 0 {
		q.Set("max_age", strconv.Itoa(f.MaxAge))
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	countRequest(outcomeRedirected)
	http.Redirect(w, r, u.String(), http.StatusFound)
	return nil
}

// prunePending caps a browser's pending cookies of one kind (sign-ins,
// sign-outs), each a sealed JSON object whose "t" orders them: beyond the
// cap, the oldest (and any unreadable) are deleted, so that a page looping
// over /.auth/login or /.auth/logout cannot grow the browser's Cookie
// header for this host.
func prunePending(codec *session.Codec, w http.ResponseWriter, r *http.Request, prefix, purpose string) {
	type pending struct {
		name    string
		created int64
	}
	var list []pending
	for _, c := range r.Cookies() {
		name := strings.TrimPrefix(c.Name, "__Host-")
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		var p struct {
			Created int64 `json:"t"`
		}
		if data, ok := codec.Open(c.Value, purpose); ok && json.Unmarshal(data, &p) == nil {
			list = append(list, pending{name, p.Created})
		} else {
			list = append(list, pending{name, 0})
		}
	}
	if len(list) < maxPending {
		return
	}
	sort.Slice(list, func(i, j int) bool { return list[i].created < list[j].created })
	for _, p := range list[:len(list)-maxPending+1] {
		c := session.Cookie(r, p.name)
		c.MaxAge = -1
		http.SetCookie(w, &c)
	}
}

// callback finishes a sign-in: it checks the state against the flow's
// cookie, handles B2C's errors, redeems the code against the policy that
// issued it, checks the ID token and starts the session.
func (h *Handler) callback(w http.ResponseWriter, r *http.Request) error {
	var params url.Values
	switch r.Method {
	case http.MethodGet:
		params = r.URL.Query()
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			return fail(w, r, http.StatusBadRequest, "Sign-in failed", "The sign-in response could not be read.", err)
		}
		params = r.PostForm
	default:
		w.Header().Set("Allow", "GET, POST")
		return fail(w, r, http.StatusMethodNotAllowed, "Method not allowed", "The sign-in callback takes GET or POST.", errors.New("callback method"))
	}
	w.Header().Set("Cache-Control", "no-store")

	if r.Method == http.MethodGet && params.Has("code") {
		// The authorization code is in the URL, which Caddy's access log
		// records: this request is left out of it (the sign-in is logged
		// here, without the code).
		caddyhttp.SetVar(r.Context(), caddyhttp.LogSkipVar, true)
	}
	state, providerErr := params.Get("state"), params.Get("error")
	if params.Get("code") == "" && providerErr == "" {
		// Not an answer to a sign-in (the return from end_session is a GET,
		// which ServeHTTP sends to logoutReturn).
		return h.logoutReturn(w, r, state)
	}
	var c *http.Cookie
	if statePattern.MatchString(state) {
		c, _ = r.Cookie(session.Cookie(r, flowCookiePrefix+state[:16]).Name)
	}
	if c == nil {
		if r.Method == http.MethodPost && params.Get("b2c_resubmit") == "" {
			// A cross-site form_post carries no SameSite=Lax cookie: post
			// the same fields again from this site, where it is sent.
			return renderResubmit(w, h.RedirectPath, params)
		}
		if providerErr != "" {
			// B2C sends some errors (AADB2C90006, a redirect URI that is not
			// registered) without the state: show the error, trust nothing.
			pe := &oidcprovider.Error{Code: providerErr, Description: params.Get("error_description")}
			h.logger.Info("identity provider returned an error without a sign-in state", zap.String("error", pe.Code), zap.String("code", oidcprovider.Code(pe.Description)))
			countCallbackError(cmp.Or(oidcprovider.Code(pe.Description), pe.Code))
			return providerErrorPage(h.logger, w, pe)
		}
		if !statePattern.MatchString(state) {
			return fail(w, r, http.StatusBadRequest, "Sign-in failed", "The sign-in response has no valid state. Start again from the page you wanted.", errors.New("callback state missing or malformed"))
		}
		countCallbackError("state_mismatch")
		return fail(w, r, http.StatusBadRequest, "Sign-in expired", "This sign-in was started more than 10 minutes ago, in another browser, or with cookies blocked (state mismatch). Start again.", errors.New("callback without its flow cookie"))
	}
	expired := session.Cookie(r, flowCookiePrefix+state[:16])
	expired.MaxAge = -1
	http.SetCookie(w, &expired) // a flow is used once, whatever happens next

	var f flow
	data, ok := h.codec.Open(c.Value, flowPurpose)
	if !ok || json.Unmarshal(data, &f) != nil || subtle.ConstantTimeCompare([]byte(f.State), []byte(state)) != 1 ||
		h.now().Sub(time.Unix(0, f.Created)) > flowLifetime {
		countCallbackError("state_mismatch")
		return fail(w, r, http.StatusBadRequest, "Sign-in failed", "The sign-in state does not match (state mismatch). Start again.", errors.New("callback state does not match its flow cookie"))
	}

	if providerErr != "" {
		return h.providerErrorReply(w, r, &f, &oidcprovider.Error{Code: providerErr, Description: params.Get("error_description")})
	}
	code := params.Get("code")
	if code == "" || len(code) > 8192 {
		return fail(w, r, http.StatusBadRequest, "Sign-in failed", "The sign-in response has no code.", errors.New("callback without code"))
	}

	p, _ := h.idp.sealedProvider(f.Policy)
	d, err := p.Get(r.Context())
	if err != nil {
		return unavailable(h.logger, w, r, err)
	}
	tr, err := h.idp.redeem(r.Context(), d, url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {h.redirectURI(r)},
		"code_verifier": {f.Verifier},
		"scope":         {strings.Join(h.Scopes, " ")},
	})
	if err != nil {
		var pe *oidcprovider.Error
		if errors.As(err, &pe) {
			switch {
			case oidcprovider.UnknownClient(pe.Description):
				h.logger.Error("the provider does not know this client_id: use the app registration's Application (client) ID, in the tenant the provider names", zap.String("code", oidcprovider.Code(pe.Description)))
			case oidcprovider.CredentialRefused(pe.Code, pe.Description):
				// The site's credentials are wrong: every sign-in fails
				// until the configuration changes.
				h.logger.Error("the provider refused this client's credentials: "+h.idp.credentialHint(), zap.String("code", oidcprovider.Code(pe.Description)))
			}
			return h.providerErrorReply(w, r, &f, pe)
		}
		if errors.Is(err, oidcprovider.ErrUnavailable) {
			return unavailable(h.logger, w, r, err)
		}
		h.logger.Warn("code redemption failed", zap.Error(err))
		return fail(w, r, http.StatusBadGateway, "Sign-in failed", "The identity provider's answer could not be used.", err)
	}
	payload, err := h.idp.verifyIDToken(r.Context(), d, tr.IDToken, f.Nonce, tr.AccessToken)
	if err != nil {
		h.logger.Warn("id token refused", zap.String("policy", f.Policy), zap.Error(err))
		countCallbackError("token_refused")
		countSignIn("error", f.Policy)
		if errors.Is(err, oidcprovider.ErrUnavailable) {
			return unavailable(h.logger, w, r, err)
		}
		var te *oidcprovider.TenantError
		if errors.As(err, &te) {
			return fail(w, r, http.StatusForbidden, "Access denied", "Accounts of your organization are not admitted to this site.", err)
		}
		return fail(w, r, http.StatusUnauthorized, "Sign-in failed", "The identity provider's token did not pass its checks.", err)
	}
	if h.PasswordResetPolicy != "" && strings.EqualFold(f.Policy, h.PasswordResetPolicy) && !strings.EqualFold(f.Policy, h.Policy) {
		// A reset flow's tokens lack the sign-in flow's claims (emails,
		// name, extension_*): continue with a sign-in, silent thanks to
		// B2C's single sign-on, and make that the session.
		h.logger.Info("password reset done; signing in", zap.String("policy", h.Policy))
		return h.startSignIn(w, r, h.Policy, f.Return, nil)
	}
	s := h.sessions.start(tr, f.Policy, payload)
	s.UserInfo = h.idp.userInfo(r.Context(), d, tr, payload)
	h.groups.forSession(r.Context(), s, orNil(h.identity(payload)), nil)
	id, ok := h.identity(withUserInfo(payload, s.UserInfo))
	if !ok {
		h.logger.Error("id token names no user: tick \"User's Object ID\" in the user flow's application claims", zap.String("policy", f.Policy))
		return fail(w, r, http.StatusUnauthorized, "Sign-in failed", "The identity provider's token names no user: its sub is missing or the constant \"Not supported\", and it has no oid. In the user flow's Application claims, tick \"User's Object ID\".", errors.New("id token without a usable oid or sub"))
	}
	if f.Need != nil {
		if unmet := f.Need.unmetBy(id, time.Unix(0, f.Created)); unmet != "" {
			// The provider did not give what the step-up asked: a page, not
			// another round trip; the session the user had stays.
			countRequest(outcome403)
			h.logger.Warn("step-up not satisfied by the provider", zap.String("user_id", id.id), zap.String("lacks", unmet))
			return renderPage(w, http.StatusForbidden, stepUpRefusedPage)
		}
	}
	if err := h.sessions.write(w, r, s, id); err != nil {
		return sessionNotKept(h.logger, w, r, "Sign-in failed", err)
	}
	if sid := id.values["sid"]; signouts.ValidSID(sid) {
		if err := h.signouts.RecordSignIn(r.Context(), sid, time.Unix(s.Expires, 0)); err != nil {
			h.logger.Warn("could not record the sign-in for front-channel logout", zap.String("user_id", id.id), zap.Error(err))
		}
	}
	h.logger.Info("user signed in", zap.String("user_id", id.id), zap.String("policy", f.Policy))
	countSignIn("success", f.Policy)
	if f.Post != "" {
		// The form the user posted while signed out goes on where it was going.
		if form, err := url.ParseQuery(f.Post); err == nil {
			return renderAutoSubmit(w, http.MethodPost, f.Return, form)
		}
	}
	http.Redirect(w, r, f.Return, http.StatusFound)
	return nil
}

// providerErrorReply handles an error from the provider. AADB2C90118
// (forgot password) starts the password reset policy; AADB2C90091, and
// AADB2C90273 or AADSTS65004 with access_denied (cancelled at a social
// provider, consent declined), go back where the user started; any other
// (AADB2C90273 with server_error is a social provider that failed) is a
// 401 page that names the code.
func (h *Handler) providerErrorReply(w http.ResponseWriter, r *http.Request, f *flow, pe *oidcprovider.Error) error {
	code := oidcprovider.Code(pe.Description)
	h.logger.Info("identity provider returned an error", zap.String("error", pe.Code), zap.String("code", code), zap.String("policy", f.Policy))
	countCallbackError(cmp.Or(code, pe.Code))
	switch code {
	case "AADB2C90118":
		if h.PasswordResetPolicy != "" {
			countSignIn("reset", f.Policy)
			return h.startSignIn(w, r, h.PasswordResetPolicy, f.Return, nil)
		}
	case "AADB2C90091", "AADB2C90273", "AADSTS65004":
		// AADSTS65004: the user declined to consent (Entra ID, External ID).
		if code == "AADB2C90091" || pe.Code == "access_denied" {
			countSignIn("cancelled", f.Policy)
			http.Redirect(w, r, f.Return, http.StatusFound)
			return nil
		}
	}
	countSignIn("error", f.Policy)
	return providerErrorPage(h.logger, w, pe)
}

// providerErrorPage is the 401 page that names a provider's error code,
// with a sentence for anyone: the description (which may name the app's
// federated credential, its tenant or its redirect URIs) goes to the log,
// for the site's operators.
func providerErrorPage(logger *zap.Logger, w http.ResponseWriter, pe *oidcprovider.Error) error {
	name := oidcprovider.Code(pe.Description)
	if name == "" {
		name = pe.Code
	}
	description := pe.Description
	if len(description) > 1024 {
		description = description[:1024]
	}
	logger.Warn("sign-in refused by the identity provider", zap.String("error", pe.Code), zap.String("code", name), zap.String("description", description))
	return renderPage(w, http.StatusUnauthorized, pageData{
		Title: "Sign-in failed", Code: name, Message: "The identity provider refused the sign-in. If this goes on, tell the site's administrators the code above.",
		Link: "/.auth/login", LinkText: "Try again",
	})
}

// hints are the authorize parameters a sign-in may pass through: an
// allowlist, each value bounded; prompt only as login (force the
// credentials). Nothing else from the request reaches the provider.
func (h *Handler) hints(from url.Values) map[string]string {
	out := map[string]string{}
	if h.DomainHint != "" {
		out["domain_hint"] = h.DomainHint
	}
	if h.UILocales != "" {
		out["ui_locales"] = h.UILocales
	}
	for _, name := range []string{"domain_hint", "login_hint", "ui_locales"} {
		if v := from.Get(name); v != "" && len(v) <= 256 && !strings.ContainsAny(v, "\r\n") {
			out[name] = v
		}
	}
	if p := from.Get("prompt"); slices.Contains(h.prompts(), p) {
		out["prompt"] = p
	}
	return out
}

// prompts are the prompt values /.auth/login passes on, as each platform
// documents them: B2C takes only login; Entra ID also select_account and
// consent; External ID also create (sign-up first). none is never passed:
// the sign-in is interactive.
func (h *Handler) prompts() []string {
	switch {
	case h.platform.b2c:
		return []string{"login"}
	case h.platform.externalID:
		return []string{"login", "select_account", "consent", "create"}
	default:
		return []string{"login", "select_account", "consent"}
	}
}

// maxPreservedPost bounds a form kept across a sign-in: it travels in the
// flow cookie, which must stay under browsers' 4 KB.
const maxPreservedPost = 2048

// preservablePost reads a form that a signed-out user posted from this
// site, to post it again after the sign-in (as mod_auth_openidc's
// OIDCPreservePost does). Only an urlencoded form of a same-origin
// navigation, of at most maxPreservedPost bytes: re-posting another site's
// form from this one, with the new session, would be a CSRF.
func (h *Handler) preservablePost(w http.ResponseWriter, r *http.Request) (string, bool) {
	if r.Method != http.MethodPost || r.Body == nil || r.ContentLength > maxPreservedPost {
		return "", false
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		return "", false
	}
	if m := r.Header.Get("Sec-Fetch-Mode"); m != "" && m != "navigate" {
		return "", false
	}
	switch site := r.Header.Get("Sec-Fetch-Site"); {
	case site == "same-origin":
	case site == "" && r.Header.Get("Origin") == h.origin(r) && strings.Contains(r.Header.Get("Accept"), "text/html"):
	default:
		return "", false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxPreservedPost+1))
	if err != nil || len(body) > maxPreservedPost {
		return "", false
	}
	if _, err := url.ParseQuery(string(body)); err != nil {
		return "", false
	}
	return string(body), true
}
