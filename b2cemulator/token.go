package b2cemulator

import (
	"cmp"
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
)

// DefaultRefreshTokenLifetime is B2C's default refresh token lifetime (14 days).
const DefaultRefreshTokenLifetime = 14 * 24 * time.Hour

// EntraRefreshTokenLifetime is the identity platform's refresh token
// lifetime (90 days; refresh-tokens: "The default lifetime for the refresh
// tokens is 24 hours for single page apps and 90 days for all other
// scenarios").
const EntraRefreshTokenLifetime = 90 * 24 * time.Hour

// DefaultRefreshTokenWindow is B2C's default refresh token sliding window
// lifetime (Bounded, 90 days).
const DefaultRefreshTokenWindow = 90 * 24 * time.Hour

// errExpiredGrant is B2C's answer to a code or refresh token past its
// lifetime, or a refresh token past its sliding window, in B2C's words
// (testdata/fixtures/b2c-errors.md): when the grant (nil: unknown) was
// issued and when its window ends.
func (e *Emulator) errExpiredGrant(g *grant) b2cError {
	now := e.state.now()
	issued, end := now, now
	if g != nil {
		issued, end = g.issued, g.expires
		if w := time.Duration(e.RefreshTokenWindow); w != 0 {
			end = g.issued.Add(w)
		}
	}
	return errGrant("AADB2C90080", fmt.Sprintf("The provided grant has expired. Please re-authenticate and try again. Current time: %d, Grant issued time: %d, Grant sliding window expiration time: %d.", now.Unix(), issued.Unix(), end.Unix()))
}

// spaRefreshLifetime is a single-page app's refresh token lifetime, always
// 24 hours (tokens-overview).
const spaRefreshLifetime = 24 * time.Hour

// discovery is the policy's OpenID Connect metadata, in B2C's member order.
// Its endpoints take the form the request used: the policy in the path, or
// `?p=<policy>`.
func (e *Emulator) discovery(r *http.Request, rt route) object {
	base := origin(r)
	if rt.tfp {
		base += "/tfp"
	}
	base += "/" + rt.tenantSegment
	p := strings.ToLower(rt.policy)
	endpoint := func(path string) string {
		if rt.policyInPath {
			return base + "/" + p + "/" + path
		}
		return base + "/" + path + "?p=" + p
	}
	return object{
		{"issuer", e.issuer(r, rt.policy)},
		{"authorization_endpoint", endpoint("oauth2/v2.0/authorize")},
		{"token_endpoint", endpoint("oauth2/v2.0/token")},
		{"end_session_endpoint", endpoint("oauth2/v2.0/logout")},
		{"jwks_uri", endpoint("discovery/v2.0/keys")},
		{"response_modes_supported", []string{"query", "fragment", "form_post"}},
		{"response_types_supported", []string{"code", "code id_token", "code token", "code id_token token", "id_token", "id_token token", "token", "token id_token"}},
		{"scopes_supported", []string{"openid"}},
		{"subject_types_supported", []string{"pairwise"}},
		{"id_token_signing_alg_values_supported", []string{"RS256"}},
		{"token_endpoint_auth_methods_supported", []string{"client_secret_post", "client_secret_basic"}},
		{"claims_supported", []string{"oid", "emails", "name", "given_name", "family_name", "idp", "sub", "tfp", "iss", "iat", "exp", "aud", "acr", "nonce", "auth_time"}},
	}
}

// tokenForm reads a token request's form; a POST of a form, else the
// status and error to answer.
func tokenForm(w http.ResponseWriter, r *http.Request) (url.Values, int, *b2cError) {
	if r.Method != http.MethodPost {
		bad := errRequest("AADB2C90085", "The token endpoint accepts only POST.")
		return nil, http.StatusMethodNotAllowed, &bad
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		bad := errRequest("AADB2C90083", "The request body is not a valid form.")
		return nil, http.StatusBadRequest, &bad
	}
	return r.PostForm, 0, nil
}

// token is the token endpoint: authorization_code, refresh_token and
// client_credentials grants.
func (e *Emulator) token(w http.ResponseWriter, r *http.Request, rt route) error {
	f, status, bad := tokenForm(w, r)
	if bad != nil {
		return e.tokenError(w, status, *bad)
	}
	clientID, secret, basic := r.BasicAuth()
	if basic {
		clientID, _ = url.QueryUnescape(clientID)
		secret, _ = url.QueryUnescape(secret)
	} else {
		clientID, secret = f.Get("client_id"), f.Get("client_secret")
	}
	if clientID == "" {
		return e.tokenError(w, http.StatusBadRequest, errRequest("AADB2C90083", "The request is missing required parameter: client_id."))
	}
	client := e.client(clientID)
	if client == nil {
		return e.tokenError(w, http.StatusBadRequest, b2cError{"unauthorized_client", "AADB2C90018", fmt.Sprintf("The client ID '%s' specified in the request is not registered in tenant '%s.onmicrosoft.com'.", clientID, e.Tenant)})
	}
	if client.Platform == "web" {
		if bad := e.authenticateClient(r, client, secret, f.Get("client_assertion_type"), f.Get("client_assertion"), origin(r)+r.URL.Path); bad != nil {
			status := http.StatusBadRequest
			if bad.err == "invalid_client" {
				status = http.StatusUnauthorized
			}
			return e.tokenError(w, status, *bad)
		}
	}

	var g *grant
	switch gt := f.Get("grant_type"); gt {
	case "client_credentials":
		return e.clientCredentials(w, r, rt, client, f.Get("scope"))
	case "authorization_code":
		code := f.Get("code")
		if code == "" {
			return e.tokenError(w, http.StatusBadRequest, errRequest("AADB2C90083", "The request is missing required parameter: code."))
		}
		g = e.state.takeCode(code)
		if g == nil {
			return e.tokenError(w, http.StatusBadRequest, e.errExpiredGrant(nil))
		}
		if err := checkGrant(g, clientID, rt.policy); err != nil {
			return e.tokenError(w, http.StatusBadRequest, *err)
		}
		if f.Get("redirect_uri") != g.redirectURI {
			return e.tokenError(w, http.StatusBadRequest, errGrant("AADB2C90006", fmt.Sprintf("The redirect URI '%s' provided in the request is not registered for the client ID '%s'.", f.Get("redirect_uri"), clientID)))
		}
		if err := checkPKCE(g, f.Get("code_verifier"), client.Platform == "spa"); err != nil {
			return e.tokenError(w, http.StatusBadRequest, *err)
		}
	case "refresh_token":
		var expired bool
		g, expired = e.state.refreshGrant(f.Get("refresh_token"))
		if expired {
			return e.tokenError(w, http.StatusBadRequest, e.errExpiredGrant(g))
		}
		if g == nil {
			return e.tokenError(w, http.StatusBadRequest, errGrant("AADB2C90129", "The provided grant has been revoked. Please reauthenticate and try again."))
		}
		if e.RefreshTokenWindow != 0 && e.state.now().After(g.issued.Add(time.Duration(e.RefreshTokenWindow))) {
			return e.tokenError(w, http.StatusBadRequest, e.errExpiredGrant(g))
		}
		if err := checkGrant(g, clientID, rt.policy); err != nil {
			return e.tokenError(w, http.StatusBadRequest, *err)
		}
		g.nonce = "" // a refreshed ID token carries no nonce
	case "":
		return e.tokenError(w, http.StatusBadRequest, errRequest("AADB2C90083", "The request is missing required parameter: grant_type."))
	default:
		return e.tokenError(w, http.StatusBadRequest, b2cError{"unsupported_grant_type", "AADB2C90086", fmt.Sprintf("The supplied grant_type [%s] is not supported.", gt)})
	}

	user := e.state.user(g.email)
	if user == nil {
		return e.tokenError(w, http.StatusBadRequest, errGrant("AADB2C90128", "The account associated with this grant no longer exists. Please reauthenticate and try again."))
	}
	if f.Get("grant_type") == "refresh_token" && user.RefreshError != "" {
		return e.refreshRefusal(w, user)
	}
	resp, err := e.tokenResponse(r, g, user)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, resp)
}

// checkGrant checks that a grant is redeemed by its client at its policy.
func checkGrant(g *grant, clientID, policy string) *b2cError {
	if g.clientID != clientID {
		err := errGrant("AADB2C90279", fmt.Sprintf("The provided client ID '%s' does not match the client ID that issued the grant.", clientID))
		return &err
	}
	if !strings.EqualFold(g.policy, policy) {
		err := errGrant("AADB2C90088", fmt.Sprintf("The provided grant has not been issued for this endpoint. Actual Value : %s and Expected Value : %s", policy, g.policy))
		return &err
	}
	return nil
}

// checkPKCE checks the code verifier against the code's challenge. A
// single-page app must have sent one.
func checkPKCE(g *grant, verifier string, spa bool) *b2cError {
	if g.challenge == "" {
		if spa {
			err := errRequest("AADB2C99059", "The supplied request must present a code_challenge. Required for single-page apps using the authorization code flow.")
			return &err
		}
		return nil
	}
	if len(verifier) < 43 || len(verifier) > 128 {
		err := errRequest("AADB2C90183", "The supplied code_verifier is invalid")
		return &err
	}
	expected := verifier
	if g.challengeMethod == "S256" {
		sum := sha256.Sum256([]byte(verifier))
		expected = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	if subtle.ConstantTimeCompare([]byte(expected), []byte(g.challenge)) != 1 {
		err := errGrant("AADB2C90182", "The supplied code_verifier does not match associated code_challenge")
		return &err
	}
	return nil
}

// tokenResponse is the answer to a successful redemption: B2C's, or (the
// Entra flavors) the identity platform's. B2C sends an access token only
// when an API scope or the client's own ID was requested; the identity
// platform always sends one — for Microsoft Graph when only OpenID scopes
// were asked. A refresh token comes only with offline_access.
func (e *Emulator) tokenResponse(r *http.Request, g *grant, user *User) (object, error) {
	now := e.state.now()
	life := time.Duration(e.TokenLifetime)
	var at, atHash string
	aud, scp, hasAccess := e.accessAudience(g)
	granted := g.scopes
	if !hasAccess && e.entra() {
		aud, scp, hasAccess = graphResource, []string{"openid", "profile", "email", "User.Read"}, true
		granted = append(slices.Clone(g.scopes), graphResource+"/User.Read")
	}
	if hasAccess {
		claims := e.accessTokenClaims(r, g, user, now, aud, scp)
		if e.entra() {
			claims = e.entraAccessTokenClaims(r, g, user, now, aud, scp)
		}
		var err error
		if at, err = e.sign(claims); err != nil {
			return nil, err
		}
		if e.AtHash {
			// at_hash: the left half of the access token's SHA-256, base64url.
			sum := sha256.Sum256([]byte(at))
			atHash = base64.RawURLEncoding.EncodeToString(sum[:16])
		}
	}
	claims := e.idTokenClaims(r, g, user, now, atHash)
	if e.entra() {
		claims = e.entraIDTokenClaims(r, g, user, now, atHash)
	}
	idToken, err := e.sign(claims)
	if err != nil {
		return nil, err
	}
	var resp object
	switch {
	case e.entra():
		// The v2.0 auth code flow's answer: token_type, scope, expires_in,
		// ext_expires_in, access_token, refresh_token, id_token.
		resp = object{{"token_type", "Bearer"}, {"scope", strings.Join(granted, " ")}, {"expires_in", int64(life.Seconds())},
			{"ext_expires_in", int64(life.Seconds())}, {"access_token", at}}
	case hasAccess:
		resp = append(resp,
			member{"access_token", at},
			member{"id_token", idToken},
			member{"token_type", "Bearer"},
			member{"not_before", now.Unix()},
			member{"expires_in", int64(life.Seconds())},
			member{"expires_on", now.Add(life).Unix()},
			member{"resource", aud},
		)
	default:
		resp = append(resp,
			member{"id_token", idToken},
			member{"token_type", "Bearer"},
			member{"not_before", now.Unix()},
		)
	}
	if r.PostForm.Get("client_info") == "1" {
		// What MSAL builds its account ID from: <oid>-<policy>.<tenant id>.
		info, _ := json.Marshal(object{{"uid", user.ObjectID + "-" + strings.ToLower(g.policy)}, {"utid", e.TenantID}})
		if e.entra() {
			info, _ = json.Marshal(object{{"uid", user.ObjectID}, {"utid", e.userTenant(user)}})
		}
		resp = append(resp, member{"client_info", base64.RawURLEncoding.EncodeToString(info)})
	}
	if !e.entra() {
		profile, _ := json.Marshal(object{{"ver", "1.0"}, {"tid", e.TenantID}, {"sub", nil}, {"name", user.Name}, {"preferred_username", nil}, {"idp", cmp.Or(user.IDP, "LocalAccount")}})
		resp = append(resp,
			member{"id_token_expires_in", int64(life.Seconds())},
			member{"profile_info", base64.RawURLEncoding.EncodeToString(profile)},
			member{"scope", strings.Join(g.scopes, " ")},
		)
	}
	if contains(g.scopes, "offline_access") {
		lifetime := time.Duration(e.RefreshTokenLifetime)
		if c := e.client(g.clientID); c != nil && c.Platform == "spa" {
			lifetime = spaRefreshLifetime
		}
		if e.RefreshTokenWindow != 0 {
			// Never past the sliding window, "irrespective of the validity
			// period of the most recent refresh token".
			lifetime = min(lifetime, g.issued.Add(time.Duration(e.RefreshTokenWindow)).Sub(now))
		}
		rt := newRefreshToken()
		ng := *g
		ng.expires = now.Add(lifetime)
		e.state.issue(e.state.refresh, &ng, rt)
		resp = append(resp, member{"refresh_token", rt})
		if !e.entra() {
			resp = append(resp, member{"refresh_token_expires_in", int64(lifetime.Seconds())})
		}
	}
	if e.entra() {
		resp = append(resp, member{"id_token", idToken})
	}
	if e.TokenNumbers == "string" {
		for i, m := range resp {
			if n, ok := m.value.(int64); ok {
				resp[i].value = strconv.FormatInt(n, 10)
			}
		}
	}
	return resp, nil
}

// accessAudience tells whether the grant's scopes ask for an access token,
// and for which audience and scopes: the client's own ID gives a token for
// the client itself; `<App ID URI>/<scope>` one for that API, whose client
// ID is the audience, as B2C does. (checkScopes refused any other scope.)
func (e *Emulator) accessAudience(g *grant) (aud string, scp []string, ok bool) {
	for _, s := range g.scopes {
		if s == g.clientID {
			if aud == "" {
				aud = g.clientID
			}
			ok = true
			continue
		}
		if api, scope := e.apiScope(s); api != nil {
			if aud == "" || aud == g.clientID {
				aud = api.ClientID
			}
			if api.ClientID == aud {
				scp = append(scp, scope)
			}
			ok = true
		}
	}
	return aud, scp, ok
}

// apiScope finds the API that exposes a scope `<App ID URI>/<scope>`.
func (e *Emulator) apiScope(s string) (*API, string) {
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return nil, ""
	}
	for k := range e.APIs {
		if a := &e.APIs[k]; strings.EqualFold(a.AppIDURI, s[:i]) && slices.Contains(a.Scopes, s[i+1:]) {
			return a, s[i+1:]
		}
	}
	return nil, ""
}

// userClaims are the claims a policy's tokens carry about the user, in
// B2C's order: those its user flow is set to return (policy_claims), by
// the identity platform's with error_codes, timestamp and IDs.
func (e *Emulator) tokenError(w http.ResponseWriter, status int, b b2cError) error {
	b = e.localize(b)
	o := object{{"error", b.err}, {"error_description", b.description()}}
	if strings.HasPrefix(b.code, "AADSTS") {
		o = append(o,
			member{"error_codes", []int64{stsErrorNumber(b.code)}},
			member{"timestamp", e.state.now().UTC().Format("2006-01-02 15:04:05Z")},
			member{"trace_id", newGUID()},
			member{"correlation_id", newGUID()})
	}
	return writeJSON(w, status, o)
}

// refreshRefusal answers a refresh grant as the user's refresh_error says:
// the identity platform's interaction_required (AADSTS50076, MFA step-up,
// with the claims challenge when configured), the same step-up as real
// answers carry it (invalid_grant, suberror basic_action, error_uri: from
// captures of Entra's answers, not a Microsoft page; see
// testdata/fixtures/entra-details.md), consent_required
// (AADSTS65001), login_required (AADSTS50058), or a 503 with
// temporarily_unavailable, the error Entra's token endpoint sends when it
// cannot serve (AADSTS90033).
func (e *Emulator) refreshRefusal(w http.ResponseWriter, u *User) error {
	var b b2cError
	status := http.StatusBadRequest
	var extra object
	switch u.RefreshError {
	case "interaction_required":
		b = b2cError{"interaction_required", "AADSTS50076", "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access this resource."}
	case "invalid_grant":
		b = b2cError{"invalid_grant", "AADSTS50076", "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '" + graphAppID + "'."}
		extra = object{{"error_uri", "https://login.microsoftonline.com/error?code=50076"}, {"suberror", "basic_action"}}
	case "consent_required":
		b = b2cError{"consent_required", "AADSTS65001", "The user or administrator has not consented to use the application. Send an interactive authorization request for this user and resource."}
	case "login_required":
		b = b2cError{"login_required", "AADSTS50058", "A silent sign-in request was sent but no user is signed in."}
	default:
		b, status = b2cError{"temporarily_unavailable", "AADSTS90033", "A transient error has occurred. Please try again."}, http.StatusServiceUnavailable
	}
	o := object{{"error", b.err}, {"error_description", b.description()},
		{"error_codes", []int64{stsErrorNumber(b.code)}},
		{"timestamp", e.state.now().UTC().Format("2006-01-02 15:04:05Z")},
		{"trace_id", newGUID()}, {"correlation_id", newGUID()}}
	o = append(o, extra...)
	if u.RefreshClaims != "" {
		o = append(o, member{"claims", u.RefreshClaims})
	}
	return writeJSON(w, status, o)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
