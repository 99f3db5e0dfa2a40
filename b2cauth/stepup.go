package b2cauth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/oidcprovider"
)

// Step-up: a block can ask more of a signed-in user than the sign-in —
// Entra ID's Conditional Access authentication contexts (the claims
// request Microsoft documents, proven in the token's acrs), a recent
// sign-in (auth_time), or a stronger B2C user flow or custom policy. A
// session that lacks it goes through the provider again and comes back
// upgraded (the same cookie, so the rest of the site keeps it); what comes
// back is checked, so that a provider that does not satisfy the request
// ends at a page, not in a loop. A bearer token that lacks it gets the
// challenge its client can answer.

// stepUp is what a block asks beyond a sign-in.
type stepUp struct {
	contexts []string      // require_auth_context: every one in acrs
	recent   time.Duration // require_recent_signin
	policies []string      // require_policy: any one proved the session
}

// need is what a step-up sign-in asked for, kept in its flow cookie and
// checked on return.
type need struct {
	Contexts []string `json:"c,omitempty"`
	Recent   bool     `json:"r,omitempty"` // a fresh sign-in: auth_time after the flow began
	Policies []string `json:"p,omitempty"`
}

// authContextID is an authentication context ID as Entra names them.
var authContextID = regexp.MustCompile(`^c([1-9]|[1-9][0-9])$`)

// checkStepUp refuses step-up options that the platform cannot honour.
func (h *Handler) checkStepUp() error {
	p := h.platformOf()
	for _, c := range h.RequireAuthContext {
		if !authContextID.MatchString(c) {
			return fmt.Errorf("require_auth_context: %q is not an authentication context ID (c1 … c99)", c)
		}
	}
	if len(h.RequireAuthContext) > 0 && p.b2c {
		return errors.New("require_auth_context: authentication contexts are Entra ID's and External ID's Conditional Access; on Azure AD B2C, use require_policy with an MFA user flow or custom policy")
	}
	if h.RequireRecentSignin < 0 || (h.RequireRecentSignin > 0 && time.Duration(h.RequireRecentSignin) < time.Minute) {
		return fmt.Errorf("require_recent_signin: %s is shorter than a minute (a sign-in takes longer than that)", time.Duration(h.RequireRecentSignin))
	}
	if len(h.RequirePolicy) > 0 && !p.b2c {
		return errors.New("require_policy: only Azure AD B2C has user flows and custom policies; with Entra ID or External ID, use require_auth_context")
	}
	for _, v := range h.RequirePolicy {
		if !validPolicyName(v) {
			return fmt.Errorf("require_policy: %q is not a user flow name", v)
		}
	}
	return nil
}

// asked tells whether the block asks anything beyond a sign-in.
func (s stepUp) asked() bool {
	return len(s.contexts) > 0 || s.recent > 0 || len(s.policies) > 0
}

// lacks says what an identity lacks of the step-up ("" when nothing).
func (s stepUp) lacks(id *identity, now time.Time) string {
	if m := missingContexts(s.contexts, id); len(m) > 0 {
		return "the authentication context " + strings.Join(m, ", ")
	}
	if s.recent > 0 {
		if _, ok := authTime(id); !ok {
			return "auth_time"
		}
		if s.stale(id, now) {
			return "a sign-in of the last " + s.recent.String()
		}
	}
	if !provedBy(s.policies, id) {
		return "the policy " + s.policies[0]
	}
	return ""
}

// stale tells a sign-in older than require_recent_signin allows (or of an
// unknown time).
func (s stepUp) stale(id *identity, now time.Time) bool {
	at, ok := authTime(id)
	return s.recent > 0 && (!ok || now.Sub(at) > s.recent+oidcprovider.ClockSkew)
}

// missingContexts are those of the contexts the token's acrs lacks.
func missingContexts(contexts []string, id *identity) []string {
	if len(contexts) == 0 {
		return nil
	}
	var missing []string
	have := claimValues(id.claims["acrs"])
	for _, c := range contexts {
		if !slices.ContainsFunc(have, func(v string) bool { return strings.EqualFold(v, c) }) {
			missing = append(missing, c)
		}
	}
	return missing
}

// provedBy tells whether one of the policies (none: any) issued the token.
func provedBy(policies []string, id *identity) bool {
	return len(policies) == 0 || slices.ContainsFunc(policies, func(p string) bool { return strings.EqualFold(p, id.values["policy"]) })
}

// authTime is the token's auth_time: when the user last authenticated.
func authTime(id *identity) (time.Time, bool) {
	n, ok := id.claims["auth_time"].(json.Number)
	if !ok {
		return time.Time{}, false
	}
	v, err := n.Int64()
	return time.Unix(v, 0), err == nil && v > 0
}

// claimsRequest is the claims parameter that asks for authentication
// contexts in acrs, for each token named (id_token, access_token), as
// Microsoft's developer guide writes it: value for one, values for several.
func claimsRequest(contexts []string, tokens ...string) string {
	acrs := map[string]any{"essential": true}
	if len(contexts) == 1 {
		acrs["value"] = contexts[0]
	} else {
		acrs["values"] = contexts
	}
	req := map[string]any{}
	for _, t := range tokens {
		req[t] = map[string]any{"acrs": acrs}
	}
	data, _ := json.Marshal(req)
	return string(data)
}

// stepUpSession sends a session that lacks the step-up through the
// provider again, keeping its place (the URL, a posted form), with what to
// ask: the claims request, prompt=login and max_age, the stronger policy,
// and the account as login_hint. An API request gets 401.
func (h *Handler) stepUpSession(w http.ResponseWriter, r *http.Request, id *identity, lacking string) error {
	if lacking == "auth_time" {
		// Entra ID sends auth_time only as an optional claim.
		countRequest(outcome403)
		h.logger.Error("require_recent_signin: the ID token has no auth_time; add it to the app registration's optional claims (Token configuration → Add optional claim → ID → auth_time)")
		return renderPage(w, http.StatusForbidden, pageData{Title: "Sign-in cannot be checked", Message: "This page needs a recent sign-in, and the identity provider does not say when you signed in. The site's administrators must add the auth_time optional claim to the app registration.", Link: "/", LinkText: "Home"})
	}
	f := flow{Policy: id.session.Policy, Return: safeReturnURL(r.URL.RequestURI()), Need: &need{}}
	post, preserved := "", false
	if h.Unauthenticated != "401" {
		post, preserved = h.preservablePost(w, r) // a form posted from the site goes on after
	}
	if !preserved && (h.Unauthenticated == "401" || (h.Unauthenticated == "" && !isNavigation(r))) {
		countRequest(outcome401)
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm(r)+`", error="insufficient_user_authentication"`)
		return fail(w, r, http.StatusUnauthorized, "Stronger sign-in required", "This resource needs "+lacking+": open it in the browser to sign in again.", errors.New("step-up needed: "+lacking))
	}
	f.Post = post
	hints := url.Values{}
	if hint := id.loginHint(); hint != "" {
		hints.Set("login_hint", hint)
	}
	if m := missingContexts(h.stepUp.contexts, id); len(m) > 0 {
		tokens := []string{"id_token"}
		if id.session.AccessToken != "" { // its API checks the context too
			tokens = append(tokens, "access_token")
		}
		f.Claims, f.Need.Contexts = claimsRequest(m, tokens...), m
	}
	if h.stepUp.stale(id, h.now()) {
		f.Need.Recent, f.Prompt = true, "login"
		if !h.platform.b2c {
			f.MaxAge = int(h.stepUp.recent.Seconds()) // B2C documents only prompt=login
		}
	}
	if !provedBy(h.stepUp.policies, id) {
		f.Policy, f.Need.Policies = h.stepUp.policies[0], h.stepUp.policies
	}
	h.logger.Info("step-up: signing in again", zap.String("user_id", id.id), zap.String("needs", lacking))
	return h.startFlow(w, r, f, hints)
}

// unmetBy says what a step-up sign-in's answer still lacks ("" when it
// has it all): the contexts asked for in acrs, an auth_time after the flow
// began, the policy asked for.
func (n *need) unmetBy(id *identity, began time.Time) string {
	if m := missingContexts(n.Contexts, id); len(m) > 0 {
		return "the authentication context " + strings.Join(m, ", ")
	}
	if n.Recent {
		if at, ok := authTime(id); !ok || at.Before(began.Add(-oidcprovider.ClockSkew)) {
			return "a new sign-in (auth_time)"
		}
	}
	if !provedBy(n.Policies, id) {
		return "the policy " + n.Policies[0]
	}
	return ""
}

// stepUpRefusedPage says the provider did not give what the page needs:
// the user keeps their session for the rest of the site.
var stepUpRefusedPage = pageData{Title: "Access blocked", Message: "This page needs a stronger sign-in, and the identity provider did not confirm it. Ask your administrator, or try again later.", Link: "/", LinkText: "Home"}

// bearerStepUp answers a bearer token that lacks the step-up. An
// authentication context: 401 with Microsoft's claims challenge when the
// client declared it can answer one (xms_cc holds cp1), else 403 naming
// the context, as Microsoft's API samples do. A recent sign-in or a
// policy: 401 insufficient_user_authentication with max_age or acr_values
// (RFC 9470).
func (h *Handler) bearerStepUp(w http.ResponseWriter, r *http.Request, id *identity, lacking string) error {
	if m := missingContexts(h.stepUp.contexts, id); len(m) > 0 {
		if !slices.ContainsFunc(claimValues(id.claims["xms_cc"]), func(v string) bool { return strings.EqualFold(v, "cp1") }) {
			countRequest(outcome403)
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm(r)+`", error="insufficient_claims", error_description="the access token lacks the authentication context `+strings.Join(m, ", ")+`"`)
			return fail(w, r, http.StatusForbidden, "Access denied", "The access token lacks the authentication context "+strings.Join(m, ", ")+".", errors.New("bearer token without the authentication context"))
		}
		authorize := ""
		if p, _ := h.idp.provider(""); p != nil {
			if d, err := p.Get(r.Context()); err == nil {
				authorize = d.Meta.AuthorizationEndpoint
			}
		}
		claims := base64.StdEncoding.EncodeToString([]byte(claimsRequest(m, "access_token")))
		countRequest(outcome401)
		w.Header().Set("WWW-Authenticate", `Bearer realm="", authorization_uri="`+authorize+`", client_id="`+h.ClientID+`", error="insufficient_claims", claims="`+claims+`", cc_type="authcontext"`)
		return fail(w, r, http.StatusUnauthorized, "Stronger sign-in required", "The access token lacks the authentication context "+m[0]+".", errors.New("bearer token without the authentication context"))
	}
	challenge := `Bearer realm="` + realm(r) + `", error="insufficient_user_authentication", error_description="` + strings.ReplaceAll(lacking, `"`, "") + `"`
	if h.stepUp.recent > 0 {
		challenge += `, max_age="` + strconv.Itoa(int(h.stepUp.recent.Seconds())) + `"`
	}
	if len(h.stepUp.policies) > 0 {
		challenge += `, acr_values="` + strings.Join(h.stepUp.policies, " ") + `"`
	}
	countRequest(outcome401)
	w.Header().Set("WWW-Authenticate", challenge)
	return fail(w, r, http.StatusUnauthorized, "Stronger sign-in required", "The access token lacks "+lacking+".", errors.New("bearer token without the step-up"))
}
