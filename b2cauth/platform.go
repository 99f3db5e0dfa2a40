package b2cauth

import (
	"errors"
	"net/url"
	"slices"
	"strings"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/oidcprovider"
	"go.uber.org/zap/zapcore"
)

// Which platform the configuration names (Azure AD B2C, Entra External
// ID, Entra ID, any OpenID provider), and where its metadata is.

// platform is the kind of provider a configuration names, read from it
// in one place (platformOf) and kept by Provision.
type platform struct {
	b2c        bool // tenant or authority: Azure AD B2C, with user flows
	externalID bool // external_id: Entra External ID by its tenant
	issuer     bool // issuer: any OpenID Connect provider (Entra ID and External ID too)
	entra      bool // Entra ID or External ID, known from the configuration
}

// platformOf reads the platform from the configuration; unresolved
// placeholders are fine, as only which field is set, and the issuer's
// host, count.
func (h *Handler) platformOf() platform {
	p := platform{b2c: h.Tenant != "" || h.Authority != "", externalID: h.ExternalID != "", issuer: h.Issuer != ""}
	p.entra = p.externalID
	if u, err := url.Parse(h.Issuer); p.issuer && err == nil {
		host := strings.ToLower(u.Hostname())
		p.entra = isEntraLoginHost(host) || strings.HasSuffix(host, ".ciamlogin.com")
	}
	return p
}

// unverifiedRuleClaim is the first allow/deny claim that Entra ID does not
// verify (email, preferred_username: "mutable" and not to be used for
// authorization, per Microsoft's ID token claims reference), when the
// provider is Entra ID or External ID; else "".
func (p platform) unverifiedRuleClaim(allow, deny []Rule) string {
	if !p.entra {
		return ""
	}
	for _, r := range append(append([]Rule{}, allow...), deny...) {
		if c := strings.ToLower(r.Claim); c == "email" || c == "preferred_username" || c == "upn" || c == "unique_name" {
			return r.Claim
		}
	}
	return ""
}

// policies lists the configured user flows; [""] with issuer or
// external_id, which have none.
func (h *Handler) policies() []string {
	if p := h.platformOf(); !p.b2c {
		return []string{""}
	}
	out := []string{h.Policy}
	for _, p := range append([]string{h.PasswordResetPolicy, h.ProfileEditPolicy}, h.RequirePolicy...) {
		if p != "" && !slices.ContainsFunc(out, func(q string) bool { return strings.EqualFold(p, q) }) {
			out = append(out, p)
		}
	}
	return out
}

// metadataURL is where a policy's discovery document is.
func (h *Handler) metadataURL(policy string) string {
	switch {
	case h.Issuer != "":
		// ?appid=<client id> (Entra ID, for apps whose tokens are signed
		// with claims-mapping keys) goes after the document's path.
		base, query, _ := strings.Cut(h.Issuer, "?")
		metadata := strings.TrimSuffix(base, "/") + "/.well-known/openid-configuration"
		if query != "" {
			metadata += "?" + query
		}
		return metadata
	case h.ExternalID != "":
		// Microsoft documents https://<subdomain>.ciamlogin.com/<tenant ID
		// or subdomain.onmicrosoft.com>/v2.0, and https://<custom URL
		// domain>/<the same>/v2.0.
		sub := strings.ToLower(h.ExternalID)
		host, path := sub+".ciamlogin.com", sub+".onmicrosoft.com"
		if h.ExternalIDTenant != "" {
			path = strings.ToLower(h.ExternalIDTenant)
		}
		if h.CustomDomain != "" {
			host = strings.ToLower(h.CustomDomain)
		}
		return "https://" + host + "/" + path + "/v2.0/.well-known/openid-configuration"
	case h.Tenant != "":
		t := strings.ToLower(h.Tenant)
		return "https://" + t + ".b2clogin.com/" + t + ".onmicrosoft.com/" + policy + "/v2.0/.well-known/openid-configuration"
	default:
		return strings.TrimSuffix(h.Authority, "/") + "/" + policy + "/v2.0/.well-known/openid-configuration"
	}
}

// provider returns a policy's provider, matched case-insensitively; the
// sign-in policy's for an unknown or empty name. For a name from an
// unverified token: it never makes a provider.
func (i *idp) provider(policy string) (*oidcprovider.Provider, string) {
	if p, ok := i.providers[strings.ToLower(policy)]; ok {
		return p, policy
	}
	if p, ok := i.providers[""]; ok {
		return p, ""
	}
	return i.providers[strings.ToLower(i.policy)], i.policy
}

// maxOtherPolicies bounds the providers made for policies that sealed
// flows and sessions name.
const maxOtherPolicies = 16

// sealedProvider returns the provider of a policy that a sealed flow or
// session names (so one of this app's b2c_auth blocks chose it): this
// block's own, else, on B2C, one made for it — the step-up policy of
// another block whose callback or renewal this block serves.
func (i *idp) sealedProvider(policy string) (*oidcprovider.Provider, string) {
	key := strings.ToLower(policy)
	if _, ok := i.providers[key]; ok || i.newProvider == nil || policy == "" || !validPolicyName(policy) {
		return i.provider(policy)
	}
	i.othersMu.Lock()
	defer i.othersMu.Unlock()
	if p, ok := i.others[key]; ok {
		return p, policy
	}
	if len(i.others) >= maxOtherPolicies {
		return i.provider(policy)
	}
	if i.others == nil {
		i.others = map[string]*oidcprovider.Provider{}
	}
	i.others[key] = i.newProvider(policy)
	return i.others[key], policy
}

// validPolicyName tells a user flow or custom policy name: letters,
// digits, _ and -.
func validPolicyName(p string) bool {
	if len(p) > 128 {
		return false
	}
	for _, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// AdditionalIssuer is another issuer of accepted bearer tokens: its
// metadata URL, or its issuer and JWKS URL.
type AdditionalIssuer struct {
	Metadata string `json:"metadata,omitempty"`
	Issuer   string `json:"issuer,omitempty"`
	JWKSURI  string `json:"jwks_uri,omitempty"`
}

// b2cUserFlow tells a B2C user flow (B2C_1_…), not a custom policy (B2C_1A_…).
func b2cUserFlow(policy string) bool {
	p := strings.ToLower(policy)
	return strings.HasPrefix(p, "b2c_1_") && !strings.HasPrefix(p, "b2c_1a_")
}

// namesRoles tells whether an allow or deny rule looks at roles.
func namesRoles(allow, deny []Rule) bool {
	for _, r := range append(append([]Rule{}, allow...), deny...) {
		if r.Claim == "roles" {
			return true
		}
	}
	return false
}

// checkRolesOnB2C refuses what a B2C user flow can never satisfy: an API
// that requires app roles alone. B2C's user flows put no roles in tokens
// (only a custom policy can emit them), so it would refuse every caller
// with 403 and nothing would say why.
func (h *Handler) checkRolesOnB2C() error {
	if h.platformOf().b2c && b2cUserFlow(h.Policy) && len(h.RequireRoles) > 0 && len(h.RequireScopes) == 0 {
		return errors.New("require_roles: B2C user flows put no roles in tokens; use require_scopes, or a custom policy that emits roles")
	}
	return nil
}

// warnAtStart logs what a configuration allows but probably does not mean.
func (h *Handler) warnAtStart() {
	p := h.platformOf()
	if (h.EasyAuthHeaders || h.IdentityAssertion != "") && h.logger.Core().Enabled(zapcore.DebugLevel) {
		h.logger.Warn("debug logging prints the headers that reverse_proxy sends upstream, App Service's token and principal headers and the identity assertion included; Caddy redacts only Cookie and Authorization: remove them with a log filter (see docs/operations.md, \"What is logged\")")
	}
	if claim := p.unverifiedRuleClaim(h.Allow, h.Deny); claim != "" {
		h.logger.Warn("allow/deny on " + claim + " with Entra ID: Microsoft says not to authorize on it, as it is mutable and not verified for every account; match oid, groups or roles (see docs/authorization.md)")
	}
	if h.RequireRecentSignin > 0 && p.entra {
		h.logger.Warn("require_recent_signin with Entra ID or External ID: their ID tokens carry auth_time only as an optional claim; add it to the app registration (Token configuration → Add optional claim → ID → auth_time), or every request here is refused")
	}
	if p.b2c && (len(h.RequireRoles) > 0 || namesRoles(h.Allow, h.Deny)) {
		h.logger.Warn("require_roles or a rule on roles with Azure AD B2C: its user flows put no roles in tokens; only a custom policy that emits a roles claim satisfies them (see docs/authorization.md)")
	}
}
