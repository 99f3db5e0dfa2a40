package b2cemulator

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// authRequest is a checked authorization request.
type authRequest struct {
	raw             url.Values
	policy          string
	client          *Client
	redirectURI     string
	responseMode    string
	state           string
	nonce           string
	scopes          []string
	challenge       string
	challengeMethod string
	prompt          string
	acrs            []string // the authentication contexts the claims request asks for
	capabilities    []string // the client's capabilities (xms_cc), from the claims request
	maxAge          int      // max_age in seconds; -1 without one
}

// parseClaimsRequest reads an OpenID Connect claims request: the
// authentication contexts it asks for in acrs (value or values, for the
// ID token or the access token), as Microsoft's developer guide writes
// it, and the client capabilities MSAL declares in the access token's
// xms_cc (CP1: the client can answer a claims challenge).
func parseClaimsRequest(claims string) (acrs, capabilities []string, ok bool) {
	var req map[string]map[string]struct {
		Value  string   `json:"value"`
		Values []string `json:"values"`
	}
	if len(claims) > 4096 || json.Unmarshal([]byte(claims), &req) != nil {
		return nil, nil, false
	}
	for _, target := range []string{"id_token", "access_token"} {
		a := req[target]["acrs"]
		for _, c := range append([]string{a.Value}, a.Values...) {
			if c != "" && !slices.Contains(acrs, c) && len(acrs) < 20 {
				acrs = append(acrs, c)
			}
		}
	}
	for _, c := range req["access_token"]["xms_cc"].Values {
		if c != "" && len(capabilities) < 8 {
			capabilities = append(capabilities, c)
		}
	}
	return acrs, capabilities, true
}

// codeRetry is what a page shows after a failed code check: the code's
// field again for a wrong one, the first step for a code that is gone.
func codeRetry(msg string, values map[string]string) map[string]string {
	if msg != codeWrong {
		delete(values, "code_sent")
	}
	return values
}

// authorize is the authorization endpoint: it checks the request, then
// shows the policy's page or, with a single sign-on session, answers at once.
// The pages post back to it, carrying the original request.
func (e *Emulator) authorize(w http.ResponseWriter, r *http.Request, rt route) error {
	params := r.URL.Query()
	action := params.Get("emulator_action")
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			return e.errorPage(w, http.StatusBadRequest, "AADB2C90083", "The form could not be read.")
		}
		var err error
		if params, err = url.ParseQuery(r.PostForm.Get("request")); err != nil {
			return e.errorPage(w, http.StatusBadRequest, "AADB2C90083", "The request parameter is malformed.")
		}
		action = r.PostForm.Get("action")
		if action != "" && crossSite(r) {
			// Only the emulator's own pages post its forms: another site
			// must not sign a developer in, up, or reset a password.
			return e.errorPage(w, http.StatusForbidden, "AADB2C90083", "Cross-site form posts are refused.")
		}
	} else if r.Method != http.MethodGet {
		return e.errorPage(w, http.StatusMethodNotAllowed, "AADB2C90083", "The authorize endpoint accepts GET and POST.")
	}
	req, stop := e.checkAuthRequest(w, params, rt)
	if stop != nil {
		return *stop
	}
	kind := policyKind(req.policy)
	sso, sid := e.ssoUser(r, req.client.ClientID)
	if req.prompt == "login" && r.Method == http.MethodGet {
		sso, sid = "", ""
	}
	if _, authTime, ok := e.state.session(sid); ok && req.maxAge >= 0 && e.state.now().Sub(authTime) > time.Duration(req.maxAge)*time.Second {
		sso, sid = "", "" // the last authentication is older than max_age: authenticate again
	}

	switch action {
	case "forgot":
		if e.entra() || e.resetsInFlow(req.policy) {
			// The identity platform, and B2C's sign-up and sign-in user
			// flows with self-service password reset, reset passwords
			// inside the sign-in pages, and the sign-in then goes on: no
			// error for the app.
			return e.page(w, req, "reset", "", nil)
		}
		return e.respondError(w, req, errForgotPassword)
	case "cancel":
		return e.respondError(w, req, errCancelled)
	case "idp_cancel":
		return e.respondError(w, req, errSocialCancelled)
	case "idp_failure":
		return e.respondError(w, req, errSocialFailed)
	case "signup_view":
		return e.page(w, req, "signup", "", nil)
	case "send_code":
		// B2C's "Send verification code": sign-up and password reset go on
		// only with the code sent to the address.
		view, email := r.PostForm.Get("purpose"), strings.TrimSpace(r.PostForm.Get("email"))
		if view != "signup" && view != "reset" {
			return e.errorPage(w, http.StatusBadRequest, "AADB2C90083", "Unknown purpose.")
		}
		values := map[string]string{"email": email}
		switch {
		case !strings.Contains(email, "@") || len(email) > 256:
			return e.page(w, req, view, "Please enter a valid email address.", values)
		case view == "signup" && e.state.user(email) != nil:
			return e.page(w, req, view, "A user with the specified ID already exists. Please choose a different one.", values)
		case view == "reset" && e.state.user(email) == nil:
			return e.page(w, req, view, "An account could not be found for the provided user ID.", values)
		}
		e.state.verify.send(view, email, e.state.now())
		e.logger.Info("verification code sent (see the emulator's mailbox page)", zap.String("purpose", view))
		values["code_sent"] = "1"
		return e.page(w, req, view, "", values)
	case "signin":
		email, password := strings.TrimSpace(r.PostForm.Get("email")), r.PostForm.Get("password")
		u := e.state.user(email)
		if u == nil {
			return e.page(w, req, "signin", "We can't seem to find your account.", map[string]string{"email": email})
		}
		if subtle.ConstantTimeCompare([]byte(password), []byte(u.Password)) != 1 {
			return e.page(w, req, "signin", "Your password is incorrect.", map[string]string{"email": email})
		}
		if e.entra() && !rt.multiTenant && e.userTenant(u) != rt.tenantID {
			return e.page(w, req, "signin", "AADSTS50020: User account '"+u.Email+"' from identity provider does not exist in tenant '"+rt.tenantID+"'.", map[string]string{"email": email})
		}
		authTime := e.state.now()
		sid := e.setSSO(w, r, req.client.ClientID, u.Email, authTime)
		if kind == "edit" {
			return e.page(w, req, "edit", "", editFields(u))
		}
		return e.issueCodeAfterMFA(w, req, u.Email, sid, authTime)
	case "mfa":
		// The second factor: the code sent when it was asked for.
		if sso == "" {
			return e.page(w, req, "signin", "Your session has expired. Please sign in again.", nil)
		}
		if msg := e.state.verify.check("mfa", sso, r.PostForm.Get("code"), e.state.now()); msg != "" {
			return e.page(w, req, "mfa", msg, map[string]string{"email": sso})
		}
		e.state.markMFA(sid)
		_, authTime, _ := e.state.session(sid)
		return e.issueCode(w, req, sso, sid, authTime)
	case "signup":
		f := r.PostForm
		u := User{
			Email: strings.TrimSpace(f.Get("email")), Password: f.Get("password"),
			Name: strings.TrimSpace(f.Get("name")), GivenName: strings.TrimSpace(f.Get("given_name")), FamilyName: strings.TrimSpace(f.Get("family_name")),
		}
		values := map[string]string{"email": u.Email, "name": u.Name, "given_name": u.GivenName, "family_name": u.FamilyName, "code_sent": "1"}
		switch {
		case !strings.Contains(u.Email, "@") || len(u.Email) > 256:
			return e.page(w, req, "signup", "Please enter a valid email address.", values)
		case len(u.Password) < 8:
			return e.page(w, req, "signup", "The password must be at least 8 characters.", values)
		case u.Password != f.Get("password_confirm"):
			return e.page(w, req, "signup", "The password entry fields do not match. Please enter the same password in both fields and try again.", values)
		}
		if msg := e.state.verify.check("signup", u.Email, f.Get("code"), e.state.now()); msg != "" {
			return e.page(w, req, "signup", msg, codeRetry(msg, values))
		}
		u.ObjectID = newGUID()
		if !e.state.addUser(u) {
			return e.page(w, req, "signup", "A user with the specified ID already exists. Please choose a different one.", values)
		}
		e.logger.Info("user signed up", zap.String("oid", u.ObjectID))
		authTime := e.state.now()
		sid := e.setSSO(w, r, req.client.ClientID, u.Email, authTime)
		return e.issueCode(w, req, u.Email, sid, authTime)
	case "reset":
		f := r.PostForm
		email, password := strings.TrimSpace(f.Get("email")), f.Get("password")
		values := map[string]string{"email": email, "code_sent": "1"}
		switch {
		case e.state.user(email) == nil:
			return e.page(w, req, "reset", "An account could not be found for the provided user ID.", nil)
		case len(password) < 8:
			return e.page(w, req, "reset", "The password must be at least 8 characters.", values)
		case password != f.Get("password_confirm"):
			return e.page(w, req, "reset", "The password entry fields do not match. Please enter the same password in both fields and try again.", values)
		}
		// The proof that the user owns the address: without it, anyone could
		// take over any account by its email.
		if msg := e.state.verify.check("reset", email, f.Get("code"), e.state.now()); msg != "" {
			return e.page(w, req, "reset", msg, codeRetry(msg, values))
		}
		e.state.updateUser(email, func(u *User) { u.Password = password })
		e.state.revokeRefreshTokens(email) // as B2C does: AADB2C90129 from now on
		authTime := e.state.now()
		sid := e.setSSO(w, r, req.client.ClientID, email, authTime)
		return e.issueCode(w, req, email, sid, authTime)
	case "edit":
		if sso == "" {
			return e.page(w, req, "signin", "Your session has expired. Please sign in again.", nil)
		}
		f := r.PostForm
		e.state.updateUser(sso, func(u *User) {
			u.Name = strings.TrimSpace(f.Get("name"))
			u.GivenName = strings.TrimSpace(f.Get("given_name"))
			u.FamilyName = strings.TrimSpace(f.Get("family_name"))
		})
		return e.issueCode(w, req, sso, sid, e.state.now())
	case "":
	default:
		return e.errorPage(w, http.StatusBadRequest, "AADB2C90083", "Unknown action.")
	}

	// A fresh request: show the policy's page, or answer from the session.
	switch kind {
	case "reset":
		return e.page(w, req, "reset", "", nil)
	case "edit":
		if sso != "" {
			return e.page(w, req, "edit", "", editFields(e.state.user(sso)))
		}
	default:
		if sso != "" {
			e.rollSSO(w, r, req.client.ClientID, sid) // a cookie-based authentication
			_, authTime, _ := e.state.session(sid)    // when the user last authenticated, not now
			return e.issueCodeAfterMFA(w, req, sso, sid, authTime)
		}
	}
	if req.prompt == "none" {
		return e.respondError(w, req, b2cError{"interaction_required", "AADB2C90077", "User does not have an existing session and request prompt parameter has a value of 'none'."})
	}
	if req.prompt == "create" {
		return e.page(w, req, "signup", "", nil) // External ID: straight to the sign-up
	}
	return e.page(w, req, "signin", "", nil)
}

// checkAuthRequest validates the parameters. Errors about the client or
// the redirect URI show an error page (nowhere safe to redirect to); the
// others go back to the redirect URI. A non-nil stop is the handler's result.
func (e *Emulator) checkAuthRequest(w http.ResponseWriter, q url.Values, rt route) (*authRequest, *error) {
	stop := func(err error) (*authRequest, *error) { return nil, &err }
	req := &authRequest{raw: q, policy: rt.policy}
	clientID := q.Get("client_id")
	if clientID == "" {
		return stop(e.errorPage(w, http.StatusBadRequest, "AADB2C90008", "The request does not contain a client ID parameter."))
	}
	if req.client = e.client(clientID); req.client == nil {
		return stop(e.errorPage(w, http.StatusBadRequest, "AADB2C90018", fmt.Sprintf("The client ID '%s' specified in the request is not registered in tenant '%s.onmicrosoft.com'.", clientID, e.Tenant)))
	}
	req.redirectURI = q.Get("redirect_uri")
	if !contains(req.client.RedirectURIs, req.redirectURI) {
		if len(req.client.RedirectURIs) == 0 {
			return stop(e.errorPage(w, http.StatusBadRequest, "AADB2C90007", fmt.Sprintf("The application associated with client ID '%s' has no registered redirect URIs.", clientID)))
		}
		// As B2C does: the error goes to the application's first registered
		// redirect URI, with error=redirect_uri_mismatch and no state.
		mismatch := b2cError{"redirect_uri_mismatch", "AADB2C90006", fmt.Sprintf("The redirect URI '%s' provided in the request is not registered for the client id '%s'.", req.redirectURI, clientID)}
		req.redirectURI, req.responseMode = req.client.RedirectURIs[0], "query"
		return stop(e.respondError(w, req, mismatch))
	}
	req.state = q.Get("state")
	req.responseMode = q.Get("response_mode")
	switch req.responseMode {
	case "":
		req.responseMode = "query"
	case "query", "fragment", "form_post":
	default:
		mode := req.responseMode
		req.responseMode = "query"
		return stop(e.respondError(w, req, errRequest("AADB2C90014", fmt.Sprintf("The requested response mode '%s' provided in the request is not supported.", mode))))
	}
	if rtype := q.Get("response_type"); rtype != "code" {
		return stop(e.respondError(w, req, b2cError{"unsupported_response_type", "AADB2C90013", fmt.Sprintf("The requested response type '%s' provided in the request is not supported.", rtype)}))
	}
	req.scopes = strings.Fields(q.Get("scope"))
	if len(req.scopes) == 0 {
		return stop(e.respondError(w, req, errRequest("AADB2C90010", "The request does not contain a scope parameter.")))
	}
	for _, sc := range req.scopes {
		switch {
		case sc == "openid" || sc == "offline_access" || sc == "profile" || sc == "email" || sc == clientID:
		default:
			if api, _ := e.apiScope(sc); api == nil {
				return stop(e.respondError(w, req, errRequest("AADB2C90117", fmt.Sprintf("The scope '%s' provided in the request is not supported.", sc))))
			}
		}
	}
	if !contains(req.scopes, "openid") {
		return stop(e.respondError(w, req, errRequest("AADB2C90115", "When requesting the 'code' response_type, the scope parameter must include a resource or client ID for access tokens, and 'openid' for ID tokens. Additionally include 'offline_access' for refresh tokens.")))
	}
	req.nonce = q.Get("nonce")
	req.challenge = q.Get("code_challenge")
	req.challengeMethod = q.Get("code_challenge_method")
	if req.challenge != "" && req.challengeMethod == "" {
		req.challengeMethod = "plain"
	}
	if req.challengeMethod != "" && req.challengeMethod != "S256" && req.challengeMethod != "plain" {
		return stop(e.respondError(w, req, errRequest("AADB2C90184", "The supplied code_challenge_method is not supported. Supported values are plain or S256")))
	}
	req.prompt = q.Get("prompt")
	switch {
	case req.prompt == "", req.prompt == "login", req.prompt == "none", req.prompt == "consent", req.prompt == "select_account":
	case req.prompt == "create" && e.Flavor == FlavorExternalID:
		// External ID's customer sign-up (Microsoft: "prompt=create").
	default:
		return stop(e.respondError(w, req, errRequest("AADB2C90043", "The prompt included in the request contains invalid values. Expected 'none', 'login', 'consent' or 'select_account'.")))
	}
	req.maxAge = -1
	if v := q.Get("max_age"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return stop(e.respondError(w, req, errRequest("AADB2C90083", "The max_age parameter must be a number of seconds.")))
		}
		req.maxAge = n
	}
	if v := q.Get("claims"); v != "" {
		acrs, capabilities, ok := parseClaimsRequest(v)
		if !ok {
			return stop(e.respondError(w, req, errRequest("AADB2C90083", "The claims parameter is not valid JSON.")))
		}
		req.acrs, req.capabilities = acrs, capabilities
	}
	return req, nil
}

// frontChannelParams are what a front-channel logout frame carries: B2C's
// iss and sid (OpenID Connect Front-Channel Logout), the identity
// platform's sid alone — an assumption from reports from the field, not a
// Microsoft page (testdata/fixtures/signout.md).
func (e *Emulator) frontChannelParams(r *http.Request, rt route, sid string) []param {
	if e.entra() {
		return []param{{"sid", sid}}
	}
	return []param{{"iss", e.issuer(r, rt.policy)}, {"sid", sid}}
}

// resetsInFlow tells a B2C sign-up and sign-in user flow configured with
// self-service password reset.
func (e *Emulator) resetsInFlow(policy string) bool {
	return slices.ContainsFunc(e.SelfServicePasswordReset, func(p string) bool { return strings.EqualFold(p, policy) })
}

// needsMFA tells whether the request asks for a second factor: an MFA
// policy (B2C), or an authentication context a policy targets (Entra).
func (e *Emulator) needsMFA(req *authRequest) bool {
	if slices.ContainsFunc(e.MFAPolicies, func(p string) bool { return strings.EqualFold(p, req.policy) }) {
		return true
	}
	return slices.ContainsFunc(req.acrs, func(c string) bool { return slices.Contains(e.AuthContexts, c) })
}

// issueCodeAfterMFA asks for the second factor when the request needs
// one and the session has not given it (a code, on the mailbox page),
// else issues the code.
func (e *Emulator) issueCodeAfterMFA(w http.ResponseWriter, req *authRequest, email, sid string, authTime time.Time) error {
	if e.needsMFA(req) && !e.state.passedMFA(sid) {
		e.state.verify.send("mfa", email, e.state.now())
		e.logger.Info("second factor asked: a one-time code (see the emulator's mailbox page)")
		return e.page(w, req, "mfa", "", map[string]string{"email": email})
	}
	return e.issueCode(w, req, email, sid, authTime)
}

// satisfiedContexts are the authentication contexts a sign-in gives:
// those asked for whose policy the session satisfied (a second factor),
// and those no policy targets.
func (e *Emulator) satisfiedContexts(req *authRequest, sid string) []string {
	var out []string
	for _, c := range req.acrs {
		if !slices.Contains(e.AuthContexts, c) || e.state.passedMFA(sid) {
			out = append(out, c)
		}
	}
	return out
}

// issueCode gives the client a code for the user, by the request's
// response mode.
func (e *Emulator) issueCode(w http.ResponseWriter, req *authRequest, email, sid string, authTime time.Time) error {
	e.state.signedInTo(sid, req.client.ClientID)
	code := newCode()
	e.state.issue(e.state.codes, &grant{
		clientID:        req.client.ClientID,
		redirectURI:     req.redirectURI,
		challenge:       req.challenge,
		challengeMethod: req.challengeMethod,
		policy:          req.policy,
		nonce:           req.nonce,
		email:           email,
		sid:             sid,
		scopes:          req.scopes,
		authTime:        authTime,
		acrs:            e.satisfiedContexts(req, sid),
		capabilities:    req.capabilities,
		issued:          e.state.now(),
		expires:         e.state.now().Add(10 * time.Minute), // B2C: codes live 10 minutes
	}, code)
	params := []param{{"code", code}}
	if req.state != "" {
		params = append(params, param{"state", req.state})
	}
	return e.respond(w, req, params)
}

// respondError sends an error back to the client's redirect URI.
func (e *Emulator) respondError(w http.ResponseWriter, req *authRequest, b b2cError) error {
	b = e.localize(b)
	params := []param{{"error", b.err}, {"error_description", b.description()}}
	if req.state != "" {
		params = append(params, param{"state", req.state})
	}
	return e.respond(w, req, params)
}

// respond delivers parameters to the redirect URI: a 302 for query and
// fragment, an auto-submitting form for form_post.
func (e *Emulator) respond(w http.ResponseWriter, req *authRequest, params []param) error {
	if req.responseMode == "form_post" {
		return render(w, http.StatusOK, "form_post", map[string]any{"Action": req.redirectURI, "Params": params})
	}
	http.Redirect(w, &http.Request{Method: http.MethodGet}, withParams(req.redirectURI, req.responseMode, params), http.StatusFound)
	return nil
}

// logout is end_session, following B2C's documented rules: with a valid
// id_token_hint, post_logout_redirect_uri must be one of the hint's
// application's redirect URIs; without one, any URI is followed, unless the
// user flow requires the hint (AADB2C90272). The Entra flavors follow only
// a registered one. A refused request leaves the
// single sign-on session as it was. A successful one ends it and loads the
// front-channel logout URL of every other application it signed in to, in
// hidden iframes, before going on.
func (e *Emulator) logout(w http.ResponseWriter, r *http.Request, rt route) error {
	q := r.URL.Query()
	target := q.Get("post_logout_redirect_uri")
	clientID := q.Get("client_id")
	hint := q.Get("id_token_hint")
	switch {
	case hint != "":
		aud, exp, err := e.verifyOwnToken(hint)
		if err != nil {
			return e.errorPage(w, http.StatusBadRequest, "AADB2C90208", "The provided id_token_hint parameter is invalid. Please provide another token and try again.")
		}
		if e.state.now().After(exp) {
			return e.errorPage(w, http.StatusBadRequest, "AADB2C90208", "The provided id_token_hint parameter is expired. Please provide another token and try again.")
		}
		if c := e.client(aud); e.Flavor == FlavorB2C && target != "" && (c == nil || !contains(c.RedirectURIs, target)) {
			return e.errorPage(w, http.StatusBadRequest, "AADB2C90287", fmt.Sprintf("The request contains invalid redirect URI '%s'.", target))
		}
		clientID = aud
	case e.LogoutRequiresIDToken:
		return e.errorPage(w, http.StatusBadRequest, "AADB2C90272", "The id_token_hint parameter has not been specified in the request. Please provide token and try again.")
	}
	// Entra ID and External ID sign the user out whatever the target, but
	// follow only a redirect URI registered for the application the hint
	// or client_id names ("This URL must match one of the redirect URIs
	// registered for your application"); otherwise they stay on their
	// signed-out page.
	if c := e.client(clientID); e.Flavor != FlavorB2C && target != "" && (c == nil || !contains(c.RedirectURIs, target)) {
		target = ""
	}
	if target != "" {
		if u, err := url.Parse(target); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return e.errorPage(w, http.StatusBadRequest, "AADB2C90067", fmt.Sprintf("The post logout redirect URI '%s' has an invalid format. Specify an https based URL such as 'https://example.com/return' or for native clients use the IETF native client URI 'urn:ietf:wg:oauth:2.0:oob'.", target))
		}
	}

	// With application-scoped sessions, only a named application's ends.
	var frames []string
	if e.SSOScope == "tenant" || clientID != "" {
		if _, sid := e.ssoUser(r, clientID); sid != "" {
			for _, id := range e.state.endSession(sid) {
				if c := e.client(id); c != nil && id != clientID && c.FrontChannelLogoutURI != "" {
					frames = append(frames, withParams(c.FrontChannelLogoutURI, "query", e.frontChannelParams(r, rt, sid)))
				}
			}
		}
		http.SetCookie(w, &http.Cookie{Name: e.ssoCookieName(clientID), Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	}

	dest := ""
	if target != "" {
		dest = target
		if s := q.Get("state"); s != "" {
			dest = withParams(target, "query", []param{{"state", s}})
		}
	}
	if len(frames) > 0 {
		return render(w, http.StatusOK, "front_channel", map[string]any{"Tenant": e.Tenant, "Frames": frames, "Next": dest})
	}
	if dest == "" {
		return render(w, http.StatusOK, "signed_out", map[string]any{"Tenant": e.Tenant})
	}
	http.Redirect(w, r, dest, http.StatusFound)
	return nil
}

// The single sign-on cookie holds the session's sid with an HMAC; the
// session itself is kept in memory. With sso_scope application, each
// application has a cookie of its own.

func (e *Emulator) ssoCookieName(clientID string) string {
	if e.SSOScope == "application" {
		return "x-ms-cpim-sso_" + e.Tenant + "_" + clientID
	}
	return "x-ms-cpim-sso_" + e.Tenant
}

// setSSO starts a single sign-on session and returns its sid. It lasts the
// web app session lifetime, in a cookie that ends with the browser; with
// "Keep me signed in" checked, the keep-me-signed-in period, in a
// persistent cookie.
func (e *Emulator) setSSO(w http.ResponseWriter, r *http.Request, clientID, email string, authTime time.Time) string {
	kmsi := e.KeepMeSignedIn > 0 && r.PostForm.Get("rememberMe") != ""
	period := time.Duration(e.SSOSessionLifetime)
	if kmsi {
		period = time.Duration(e.KeepMeSignedIn)
	}
	sid := e.state.newSession(email, authTime, e.state.now().Add(period), kmsi)
	e.ssoCookie(w, r, clientID, sid, period, kmsi)
	return sid
}

// ssoCookie writes the single sign-on cookie: persistent for a
// keep-me-signed-in session, else ending with the browser.
func (e *Emulator) ssoCookie(w http.ResponseWriter, r *http.Request, clientID, sid string, period time.Duration, persistent bool) {
	c := &http.Cookie{
		Name: e.ssoCookieName(clientID), Value: sid + "." + e.ssoMAC(sid),
		Path: "/", HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode,
	}
	if persistent {
		c.MaxAge = int(period.Seconds())
	}
	http.SetCookie(w, c)
}

// rollSSO extends a session used for single sign-on, when the web app
// session timeout is rolling ("the session is extended every time the
// user performs a cookie-based authentication"); an absolute one ends a
// lifetime after the sign-in, whatever its use.
func (e *Emulator) rollSSO(w http.ResponseWriter, r *http.Request, clientID, sid string) {
	if e.SSOSessionTimeout == "absolute" {
		return
	}
	if period, kmsi := e.state.extendSession(sid, time.Duration(e.SSOSessionLifetime), time.Duration(e.KeepMeSignedIn)); period > 0 {
		e.ssoCookie(w, r, clientID, sid, period, kmsi)
	}
}

// ssoUser is the email and sid of the browser's signed-in user, or "".
func (e *Emulator) ssoUser(r *http.Request, clientID string) (email, sid string) {
	c, err := r.Cookie(e.ssoCookieName(clientID))
	if err != nil {
		return "", ""
	}
	i := strings.LastIndexByte(c.Value, '.')
	if i < 0 || !hmac.Equal([]byte(c.Value[i+1:]), []byte(e.ssoMAC(c.Value[:i]))) {
		return "", ""
	}
	sid = c.Value[:i]
	email, _, ok := e.state.session(sid)
	if !ok || e.state.user(email) == nil {
		return "", ""
	}
	return email, sid
}

func (e *Emulator) ssoMAC(payload string) string {
	m := hmac.New(sha256.New, e.state.ssoKey)
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func editFields(u *User) map[string]string {
	if u == nil {
		return nil
	}
	return map[string]string{"email": u.Email, "name": u.Name, "given_name": u.GivenName, "family_name": u.FamilyName}
}
