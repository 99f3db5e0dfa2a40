package b2cemulator

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/caddy-b2c/caddy-b2c/internal/guid"
	"github.com/caddyserver/caddy/v2"
)

// tenantPattern is what B2C accepts as a tenant name.
var tenantPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// validate checks the configuration; every error names the field.
func (e *Emulator) validate() error {
	if !tenantPattern.MatchString(e.Tenant) {
		return fmt.Errorf("tenant: %q is not a tenant name (letters, digits and dashes)", e.Tenant)
	}
	if !guid.Valid(e.TenantID) {
		return fmt.Errorf("tenant_id: %q is not a GUID", e.TenantID)
	}
	seen := map[string]bool{}
	for _, p := range e.Policies {
		if p == "" || strings.ContainsAny(p, "/?#& ") {
			return fmt.Errorf("policies: %q is not a policy name", p)
		}
		if seen[strings.ToLower(p)] {
			return fmt.Errorf("policies: %q is listed twice", p)
		}
		seen[strings.ToLower(p)] = true
	}
	clients := map[string]bool{}
	for _, c := range e.Clients {
		if c.ClientID == "" {
			return fmt.Errorf("client: client_id is required")
		}
		if clients[c.ClientID] {
			return fmt.Errorf("client: %q is registered twice", c.ClientID)
		}
		clients[c.ClientID] = true
		for _, u := range c.RedirectURIs {
			pu, err := url.Parse(u)
			if err != nil || pu.Scheme == "" || pu.Host == "" || pu.Fragment != "" {
				return fmt.Errorf("client %s: redirect_uri %q is not an absolute URL", c.ClientID, u)
			}
		}
		switch {
		case c.Platform == "web" && c.Secret == "" && len(c.Certificates) == 0 && len(c.FederatedCredentials) == 0:
			return fmt.Errorf("client %s: platform web needs a secret, a certificate or a federated_credential (a web app is a confidential client)", c.ClientID)
		case (c.Platform == "spa" || c.Platform == "native") && (c.Secret != "" || len(c.Certificates) > 0 || len(c.FederatedCredentials) > 0):
			return fmt.Errorf("client %s: platform %s is a public client and has no secret, certificate or federated credential", c.ClientID, c.Platform)
		case c.Platform != "web" && c.Platform != "spa" && c.Platform != "native":
			return fmt.Errorf("client %s: platform %q is not web, spa or native", c.ClientID, c.Platform)
		}
		for _, oc := range c.OptionalClaims {
			if !slices.Contains(optionalClaims, oc) {
				return fmt.Errorf("client %s: optional_claims: %q is not one the emulator knows (%s)", c.ClientID, oc, strings.Join(optionalClaims, ", "))
			}
		}
		for _, fc := range c.FederatedCredentials {
			if u, err := url.Parse(fc.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
				return fmt.Errorf("client %s: federated_credential issuer %q is not an absolute http(s) URL", c.ClientID, fc.Issuer)
			}
			if fc.Subject == "" {
				return fmt.Errorf("client %s: federated_credential needs a subject", c.ClientID)
			}
		}
		if u := c.FrontChannelLogoutURI; u != "" {
			pu, err := url.Parse(u)
			if err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" || pu.Fragment != "" {
				return fmt.Errorf("client %s: front_channel_logout_uri %q is not an absolute http(s) URL", c.ClientID, u)
			}
		}
	}
	identities := map[string]bool{}
	for _, m := range e.ManagedIdentities {
		if m.ClientID == "" || identities[m.ClientID] {
			return fmt.Errorf("managed_identity: %q is empty or listed twice", m.ClientID)
		}
		identities[m.ClientID] = true
	}
	for _, a := range e.APIs {
		if u, err := url.Parse(a.AppIDURI); err != nil || u.Scheme == "" || u.Host == "" || strings.HasSuffix(a.AppIDURI, "/") {
			return fmt.Errorf("api: %q is not an App ID URI (https://<tenant>.onmicrosoft.com/<name>)", a.AppIDURI)
		}
		if len(a.Scopes) == 0 {
			return fmt.Errorf("api %s: scopes are required", a.AppIDURI)
		}
	}
	users := map[string]bool{}
	for _, u := range e.Users {
		if !strings.Contains(u.Email, "@") {
			return fmt.Errorf("user: %q is not an email address", u.Email)
		}
		if u.Password == "" {
			return fmt.Errorf("user %s: password is required", u.Email)
		}
		if users[strings.ToLower(u.Email)] {
			return fmt.Errorf("user: %q is defined twice", u.Email)
		}
		users[strings.ToLower(u.Email)] = true
		if u.ObjectID != "" && !guid.Valid(u.ObjectID) {
			return fmt.Errorf("user %s: object_id %q is not a GUID", u.Email, u.ObjectID)
		}
	}
	if time.Duration(e.TokenLifetime) < time.Minute || time.Duration(e.TokenLifetime) > 24*time.Hour {
		return fmt.Errorf("token_lifetime: %s is outside 1m..24h", time.Duration(e.TokenLifetime))
	}
	if e.RefreshTokenLifetime < caddy.Duration(time.Second) || time.Duration(e.RefreshTokenLifetime) > 90*24*time.Hour {
		return fmt.Errorf("refresh_token_lifetime: %s is outside 1s..90 days", time.Duration(e.RefreshTokenLifetime))
	}
	if e.RefreshTokenWindow != 0 && (e.RefreshTokenWindow < e.RefreshTokenLifetime || time.Duration(e.RefreshTokenWindow) > 365*24*time.Hour) {
		return fmt.Errorf("refresh_token_window: %s must be at least refresh_token_lifetime (%s) and at most 365 days", time.Duration(e.RefreshTokenWindow), time.Duration(e.RefreshTokenLifetime))
	}
	if e.SSOSessionLifetime < 0 {
		return fmt.Errorf("sso_session_lifetime: %s is negative", time.Duration(e.SSOSessionLifetime))
	}
	if e.SSOSessionTimeout != "rolling" && e.SSOSessionTimeout != "absolute" {
		return fmt.Errorf("sso_session_timeout: %q is neither rolling nor absolute", e.SSOSessionTimeout)
	}
	if e.KeepMeSignedIn != 0 && (e.entra() || e.KeepMeSignedIn < 0 || time.Duration(e.KeepMeSignedIn) > 90*24*time.Hour) {
		return fmt.Errorf("keep_me_signed_in: flavor b2c only, at most 90 days (B2C's \"Keep me signed in session (days)\" is 1 to 90)")
	}
	if e.TokenNumbers != "" && e.TokenNumbers != "number" && e.TokenNumbers != "string" {
		return fmt.Errorf("token_numbers: %q is neither number nor string", e.TokenNumbers)
	}
	if e.TokenNumbers == "string" && e.entra() {
		return fmt.Errorf("token_numbers string: flavor %s answers with JSON numbers, as the identity platform does", e.Flavor)
	}
	if e.IssuerForm != "tenant_id" && e.IssuerForm != "tfp" {
		return fmt.Errorf("issuer_form: %q is neither tenant_id nor tfp", e.IssuerForm)
	}
	if e.Subject != "object_id" && e.Subject != "not_supported" {
		return fmt.Errorf("subject: %q is neither object_id nor not_supported", e.Subject)
	}
	for p := range e.PolicyClaims {
		if e.policyNamed(p) == "" {
			return fmt.Errorf("policy_claims: %q is not one of the policies", p)
		}
	}
	if e.Flavor != FlavorB2C && e.Flavor != FlavorExternalID && e.Flavor != FlavorEntraID {
		return fmt.Errorf("flavor: %q is not b2c, external_id or entra_id", e.Flavor)
	}
	if e.MultiTenant && e.Flavor != FlavorEntraID {
		return fmt.Errorf("multi_tenant: only with flavor entra_id")
	}
	for _, g := range e.Groups {
		if !guid.Valid(strings.ToLower(g.ObjectID)) {
			return fmt.Errorf("group: %q is not an object ID (GUID)", g.ObjectID)
		}
	}
	for _, u := range e.Users {
		if u.TenantID != "" && !guid.Valid(u.TenantID) {
			return fmt.Errorf("user %s: tenant_id %q is not a GUID", u.Email, u.TenantID)
		}
	}
	if e.SSOScope != "tenant" && e.SSOScope != "application" {
		return fmt.Errorf("sso_scope: %q is neither tenant nor application", e.SSOScope)
	}
	if e.PolicyClaim != "tfp" && e.PolicyClaim != "acr" {
		return fmt.Errorf("policy_claim: %q is neither tfp nor acr", e.PolicyClaim)
	}
	return nil
}
