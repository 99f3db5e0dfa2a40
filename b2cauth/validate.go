package b2cauth

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/oidcprovider"
	"github.com/caddy-b2c/caddy-b2c/b2cauth/session"
	"github.com/caddy-b2c/caddy-b2c/internal/guid"
)

// The configuration as written, checked before anything is built: every
// error names the field.

// Defaults.
const (
	defaultRedirectPath    = "/.auth/login/b2c/callback"
	defaultSessionLifetime = 8 * time.Hour
)

// checkConfig checks the configuration as written; every error names the
// field. The Caddyfile parser runs it too, so `caddy adapt` reports them.
func (h *Handler) checkConfig() error {
	if err := h.checkCredential(); err != nil {
		return err
	}
	n := 0
	for _, v := range []string{h.Tenant, h.Authority, h.Issuer, h.ExternalID} {
		if v != "" {
			n++
		}
	}
	switch {
	case n == 0:
		return errors.New("tenant, authority, issuer or external_id: one is required")
	case n > 1:
		return errors.New("tenant, authority, issuer, external_id: give only one")
	}
	if h.Tenant != "" && !hasPlaceholder(h.Tenant) && !validTenant(h.Tenant) {
		return fmt.Errorf("tenant: %q is not a tenant name (letters, digits and dashes)", h.Tenant)
	}
	switch e := h.ExternalID; {
	case e != "" && !hasPlaceholder(e) && guid.Valid(e):
		return fmt.Errorf("external_id: %q is a tenant ID; give the tenant's subdomain (contoso for contoso.ciamlogin.com) first, then, if you like, the tenant ID: external_id contoso %s", e, e)
	case e != "" && !hasPlaceholder(e) && !validTenant(e):
		return fmt.Errorf("external_id: %q is not a tenant subdomain (contoso for contoso.ciamlogin.com)", e)
	case h.ExternalIDTenant != "" && !hasPlaceholder(h.ExternalIDTenant) && !guid.Valid(h.ExternalIDTenant):
		return fmt.Errorf("external_id: %q is not a tenant ID (a GUID)", h.ExternalIDTenant)
	}
	if h.CustomDomain != "" && h.ExternalID == "" {
		return errors.New("custom_domain: only with external_id (a B2C custom domain goes in authority, another provider's in issuer)")
	}
	if h.CustomDomain != "" && !hasPlaceholder(h.CustomDomain) && !validDomain(h.CustomDomain) {
		return fmt.Errorf("custom_domain: %q is not a host name like login.contoso.com (no scheme, port or path)", h.CustomDomain)
	}
	for _, t := range h.Tenants {
		if t != "*" && !hasPlaceholder(t) && !guid.Valid(strings.ToLower(t)) {
			return fmt.Errorf("tenants: %q is neither a tenant ID (GUID) nor *", t)
		}
	}
	if h.Issuer != "" && !hasPlaceholder(h.Issuer) && oidcprovider.MultiTenantIssuer(h.Issuer) && len(h.Tenants) == 0 {
		return errors.New("tenants: required with a multi-tenant issuer (organizations or common): list the tenant IDs to admit, or *")
	}
	for field, v := range map[string]string{"authority": h.Authority, "issuer": h.Issuer, "public_url": h.PublicURL} {
		if v == "" || hasPlaceholder(v) {
			continue
		}
		u, err := url.Parse(v)
		if err != nil {
			return fmt.Errorf("%s: %q is not a URL: %v", field, v, err)
		}
		query := u.Query()
		if field == "issuer" {
			query.Del("appid") // Entra ID's metadata of an app with claims-mapping signing keys
		}
		if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || len(query) > 0 || u.Fragment != "" {
			return fmt.Errorf("%s: %q is not an absolute http(s) URL without query (issuer may carry ?appid=<client id>)", field, v)
		}
	}
	if u, err := url.Parse(h.Authority); h.Authority != "" && !hasPlaceholder(h.Authority) && err == nil {
		host, segs := strings.ToLower(u.Hostname()), strings.Split(strings.Trim(u.Path, "/"), "/")
		last := strings.ToLower(segs[len(segs)-1])
		switch {
		case host == "login.microsoftonline.com" && (strings.Contains(u.Path, "/v2.0") || guid.Valid(strings.ToLower(segs[0])) || last == "organizations" || last == "common"):
			return fmt.Errorf("authority: %q is a Microsoft Entra ID URL; authority is for Azure AD B2C: for Entra ID use issuer https://login.microsoftonline.com/<tenant ID>/v2.0", h.Authority)
		case host == "login.microsoftonline.com":
			return fmt.Errorf("authority: login.microsoftonline.com stopped serving B2C on 2020-12-04; use https://<tenant>.b2clogin.com/<tenant>.onmicrosoft.com (or the tenant directive); for Entra ID, use issuer")
		case strings.HasSuffix(host, ".ciamlogin.com"):
			return fmt.Errorf("authority: %q is an Entra External ID URL; use external_id <tenant> (or issuer)", h.Authority)
		case last == "v2.0" || strings.Contains(u.Path, ".well-known") || strings.Contains(u.Path, "/oauth2/"):
			return fmt.Errorf("authority: %q goes past the tenant: give only the base, like https://<tenant>.b2clogin.com/<tenant>.onmicrosoft.com, and the user flow with policy", h.Authority)
		case len(segs) > 1 && (strings.EqualFold(last, h.Policy) || strings.HasPrefix(last, "b2c_1_") || strings.HasPrefix(last, "b2c_1a_")):
			return fmt.Errorf("authority: %q ends with the user flow %s: give the authority without it (…/<tenant>.onmicrosoft.com) and the flow with policy", h.Authority, segs[len(segs)-1])
		}
	}
	noPolicies := !h.platformOf().b2c
	if !noPolicies && h.Policy == "" {
		return errors.New("policy: required with tenant or authority")
	}
	if noPolicies && (h.Policy != "" || h.PasswordResetPolicy != "" || h.ProfileEditPolicy != "") {
		return errors.New("policy: issuer and external_id have no policies (user flows are chosen by the application registration)")
	}
	for field, v := range map[string]string{"policy": h.Policy, "password_reset_policy": h.PasswordResetPolicy, "profile_edit_policy": h.ProfileEditPolicy} {
		if strings.ContainsAny(v, "/?#&% ") {
			return fmt.Errorf("%s: %q is not a user flow name", field, v)
		}
	}
	if h.ClientID == "" {
		return errors.New("client_id: required")
	}
	if h.RedirectPath != "" && (!strings.HasPrefix(h.RedirectPath, "/") || strings.HasPrefix(h.RedirectPath, "//") || strings.ContainsAny(h.RedirectPath, "?#")) {
		return fmt.Errorf("redirect_path: %q must be a path starting with /", h.RedirectPath)
	}
	switch h.ResponseMode {
	case "", "query", "form_post":
	default:
		return fmt.Errorf("response_mode: %q is neither query nor form_post", h.ResponseMode)
	}
	for i, s := range h.CookieSecret {
		if hasPlaceholder(s) {
			continue // checked once resolved
		}
		if _, err := session.DecodeSecret(s); err != nil {
			return fmt.Errorf("cookie_secret: secret %d %v (want base64 of 32 bytes)", i+1, err)
		}
	}
	if h.SessionLifetime < 0 || (h.SessionLifetime > 0 && time.Duration(h.SessionLifetime) < time.Minute) {
		return errors.New("session_lifetime: must be at least 1m")
	}
	if h.InactivityTimeout < 0 || (h.InactivityTimeout > 0 && time.Duration(h.InactivityTimeout) < time.Minute) {
		return errors.New("inactivity_timeout: must be at least 1m")
	}
	switch h.SessionStore {
	case "", "cookie", "storage":
	default:
		return fmt.Errorf("session_store: %q is neither cookie nor storage", h.SessionStore)
	}
	for _, t := range h.SessionTokens {
		switch {
		case t == "none" && len(h.SessionTokens) == 1:
		case t == "id" || t == "access" || t == "refresh":
		case t == "none":
			return errors.New("session_tokens: none cannot go with other tokens")
		default:
			return fmt.Errorf("session_tokens: %q is not id, access, refresh or none", t)
		}
	}
	if h.RevocationSync < 0 || (h.RevocationSync > 0 && time.Duration(h.RevocationSync) < time.Second) {
		return errors.New("revocation_sync: must be at least 1s")
	}
	if u, err := url.Parse(h.PublicURL); h.PublicURL != "" && err == nil && strings.Trim(u.Path, "/") != "" {
		return fmt.Errorf("public_url: %q must be an origin, without a path", h.PublicURL)
	}
	switch h.Refresh {
	case "", "auto", "off":
	default:
		return fmt.Errorf("refresh: %q is neither auto nor off", h.Refresh)
	}
	switch h.Groups {
	case "", "token", "graph":
	default:
		return fmt.Errorf("groups: %q is neither token nor graph", h.Groups)
	}
	if err := h.checkRolesOnB2C(); err != nil {
		return err
	}
	if err := h.checkStepUp(); err != nil {
		return err
	}
	switch h.GraphGroups {
	case "", "security", "all":
	default:
		return fmt.Errorf("graph_groups: %q is neither security nor all", h.GraphGroups)
	}
	switch h.KeepGroups {
	case "", "named", "all":
	default:
		return fmt.Errorf("keep_groups: %q is neither named nor all", h.KeepGroups)
	}
	if h.platformOf().b2c && h.Groups != "graph" && namesGroups(h.Allow, h.Deny) {
		return errors.New("groups: Azure AD B2C's tokens carry no groups claim, so a rule on groups never matches: set groups graph (Microsoft Graph, with the application permissions User.Read.All and GroupMember.Read.All)")
	}
	for field, v := range map[string]string{"graph_endpoint": h.GraphEndpoint, "graph_login": h.GraphLogin} {
		if u, err := url.Parse(v); v != "" && !hasPlaceholder(v) && (err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "") {
			return fmt.Errorf("%s: %q is not an absolute http(s) URL", field, v)
		}
	}
	switch h.Unauthenticated {
	case "", "redirect", "401", "allow":
	default:
		return fmt.Errorf("unauthenticated: %q is not redirect, 401 or allow", h.Unauthenticated)
	}
	switch h.CORSPreflight {
	case "", "authenticate", "pass":
	default:
		return fmt.Errorf("cors_preflight: %q is neither pass nor authenticate", h.CORSPreflight)
	}
	for i, a := range h.AdditionalIssuers {
		switch {
		case a.Metadata != "" && (a.Issuer != "" || a.JWKSURI != ""):
			return fmt.Errorf("additional_issuers %d: give its metadata URL, or its issuer and jwks_uri, not both", i+1)
		case a.Metadata == "" && (a.Issuer == "" || a.JWKSURI == ""):
			return fmt.Errorf("additional_issuers %d: needs a metadata URL, or an issuer and a jwks_uri", i+1)
		}
		for _, u := range []string{a.Metadata, a.Issuer, a.JWKSURI} {
			if pu, err := url.Parse(u); u != "" && (err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "") {
				return fmt.Errorf("additional_issuers %d: %q is not an absolute http(s) URL", i+1, u)
			}
		}
	}
	for _, r := range append(append([]Rule{}, h.Allow...), h.Deny...) {
		if r.Claim == "" || len(r.Patterns) == 0 {
			return errors.New("allow/deny: a rule needs a claim and at least one pattern")
		}
	}
	return nil
}

// hasPlaceholder tells whether a value holds a {placeholder}, which only
// Provision resolves.
func hasPlaceholder(v string) bool { return strings.Contains(v, "{") }

// validDomain tells whether h is a DNS host name: dot-separated labels of
// letters, digits and dashes.
func validDomain(h string) bool {
	if len(h) > 253 || !strings.Contains(h, ".") {
		return false
	}
	for label := range strings.SplitSeq(h, ".") {
		if !validTenant(label) {
			return false
		}
	}
	return true
}

func validTenant(t string) bool {
	if t == "" || len(t) > 63 {
		return false
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// resolvePlaceholders resolves the {env.*} and {file.*} placeholders of
// the fields that take them, but for the credential's and cookie_secret,
// which are resolved where they are read. Provision resolves them, and
// caddy b2c check on a copy.
func (h *Handler) resolvePlaceholders(resolve func(field, v string) (string, error)) error {
	var err error
	for _, f := range []struct {
		name string
		v    *string
	}{{"tenant", &h.Tenant}, {"authority", &h.Authority}, {"issuer", &h.Issuer}, {"external_id", &h.ExternalID}, {"external_id", &h.ExternalIDTenant}, {"custom_domain", &h.CustomDomain}, {"client_id", &h.ClientID}, {"public_url", &h.PublicURL}} {
		if *f.v, err = resolve(f.name, *f.v); err != nil {
			return err
		}
	}
	h.Issuer = oneSlashAfterHost(h.Issuer)
	for name, list := range map[string][]string{"tenants": h.Tenants, "audience": h.Audience} {
		for i, v := range list {
			if list[i], err = resolve(name, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// oneSlashAfterHost takes a doubled slash after an issuer's host as one, so
// that an issuer built from a host that ends with a slash and one that
// does not ({env.AZURE_AUTHORITY_HOST}/{env.AZURE_TENANT_ID}/v2.0) is the same.
func oneSlashAfterHost(issuer string) string {
	scheme, rest, ok := strings.Cut(issuer, "://")
	if !ok {
		return issuer
	}
	host, path, ok := strings.Cut(rest, "/")
	if !ok {
		return issuer
	}
	return scheme + "://" + host + "/" + strings.TrimLeft(path, "/")
}
