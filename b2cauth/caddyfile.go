package b2cauth

import (
	"encoding/json"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddytls"

	"github.com/caddy-b2c/caddy-b2c/internal/suggest"
)

func init() {
	httpcaddyfile.RegisterDirective("b2c_auth", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("b2c_auth", httpcaddyfile.Before, "basic_auth")
}

// parseCaddyfile sets up the handler from a b2c_auth block. The matcher, if
// any, does not go on the route (which would hide the /.auth endpoints and
// the callback from requests outside it): it becomes the handler's
// `protect`, so the handler sees every request, serves its endpoints, and
// requires sign-in only where the matcher matches.
//
//	b2c_auth [<matcher>] {
//	    tenant    <name>
//	    authority <url>
//	    issuer    <url>
//	    external_id <tenant subdomain or ID>
//	    tenants <tenant ID...>|*
//	    policy                <user flow>
//	    password_reset_policy <user flow>
//	    profile_edit_policy   <user flow>
//	    client_id     <id>
//	    client_secret <secret>
//	    client_certificate <cert path> <key path>
//	    client_assertion file <path> | managed_identity <client ID>
//	    scopes        <scope...>
//	    redirect_path <path>
//	    response_mode query|form_post
//	    cookie_secret <secret...>
//	    session_lifetime   <duration>
//	    inactivity_timeout <duration>
//	    session_store cookie|storage
//	    session_tokens id|access|refresh...|none
//	    allow <claim> <pattern...>
//	    deny  <claim> <pattern...>
//	    unauthenticated redirect|401|allow
//	    cors_preflight authenticate|pass
//	    refresh auto|off
//	    audience       <aud...>
//	    require_scopes <scope...>
//	    require_roles  <role...>
//	    additional_issuer <metadata URL> | <issuer> <jwks URL>
//	    easy_auth_headers
//	    expose_idp_access_token
//	    revocation_sync <duration>
//	    public_url <origin>
//	    tls_trust_pool <source> [...]
//	    identity_assertion [<header>]
//	    assertion_audience <aud...>
//	    groups token|graph
//	    keep_groups named|all
//	    graph_endpoint <url>
//	    graph_login <url>
//	    domain_hint <domain>
//	    ui_locales <locales>
//	}
func parseCaddyfile(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	if !h.Next() {
		return nil, h.ArgErr()
	}
	matcher, err := h.ExtractMatcherSet()
	if err != nil {
		return nil, err
	}
	handler := new(Handler)
	if err := handler.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	if matcher != nil {
		handler.ProtectRaw = matcher
	}
	var warnings []caddyconfig.Warning
	route := caddyhttp.Route{
		HandlersRaw: []json.RawMessage{caddyconfig.JSONModuleObject(handler, "handler", "b2c_auth", &warnings)},
	}
	return []httpcaddyfile.ConfigValue{{Class: "route", Value: route}}, nil
}

// UnmarshalCaddyfile reads a b2c_auth block (without its matcher) and
// checks it, so that `caddy adapt` reports configuration errors.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		name := d.Val()
		one := func(dst *string) error {
			if !d.AllArgs(dst) {
				return d.ArgErr()
			}
			return nil
		}
		many := func(dst *[]string) error {
			*dst = append(*dst, d.RemainingArgs()...)
			if len(*dst) == 0 {
				return d.ArgErr()
			}
			return nil
		}
		duration := func(dst *caddy.Duration) error {
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			v, err := caddy.ParseDuration(s)
			if err != nil {
				return d.Errf("%s: %v", name, err)
			}
			*dst = caddy.Duration(v)
			return nil
		}
		var err error
		switch name {
		case "tenant":
			err = one(&h.Tenant)
		case "authority":
			err = one(&h.Authority)
		case "issuer":
			err = one(&h.Issuer)
		case "external_id":
			err = one(&h.ExternalID)
		case "custom_domain":
			err = one(&h.CustomDomain)
		case "tenants":
			err = many(&h.Tenants)
		case "policy":
			err = one(&h.Policy)
		case "password_reset_policy":
			err = one(&h.PasswordResetPolicy)
		case "profile_edit_policy":
			err = one(&h.ProfileEditPolicy)
		case "client_id":
			err = one(&h.ClientID)
		case "client_secret":
			err = one(&h.ClientSecret)
		case "client_certificate":
			h.ClientCertificate = &CertificateFiles{}
			if !d.AllArgs(&h.ClientCertificate.Cert, &h.ClientCertificate.Key) {
				return d.Errf("client_certificate: needs <cert path> <key path> (PEM)")
			}
		case "client_assertion":
			h.ClientAssertion = &ClientAssertion{}
			if !d.AllArgs(&h.ClientAssertion.Kind, &h.ClientAssertion.Value) {
				return d.Errf("client_assertion: needs file <path> or managed_identity <client ID>")
			}
		case "redirect_path":
			err = one(&h.RedirectPath)
		case "response_mode":
			err = one(&h.ResponseMode)
		case "unauthenticated":
			err = one(&h.Unauthenticated)
		case "cors_preflight":
			err = one(&h.CORSPreflight)
		case "refresh":
			err = one(&h.Refresh)
		case "scopes":
			err = many(&h.Scopes)
		case "cookie_secret":
			err = many(&h.CookieSecret)
		case "audience":
			err = many(&h.Audience)
		case "require_scopes":
			err = many(&h.RequireScopes)
		case "require_roles":
			err = many(&h.RequireRoles)
		case "additional_issuer":
			args := d.RemainingArgs()
			switch len(args) {
			case 1:
				h.AdditionalIssuers = append(h.AdditionalIssuers, AdditionalIssuer{Metadata: args[0]})
			case 2:
				h.AdditionalIssuers = append(h.AdditionalIssuers, AdditionalIssuer{Issuer: args[0], JWKSURI: args[1]})
			default:
				return d.Errf("additional_issuer: want <metadata URL>, or <issuer> <jwks URL>")
			}
		case "session_lifetime":
			err = duration(&h.SessionLifetime)
		case "session_store":
			err = one(&h.SessionStore)
		case "session_tokens":
			err = many(&h.SessionTokens)
		case "inactivity_timeout":
			err = duration(&h.InactivityTimeout)
		case "revocation_sync":
			err = duration(&h.RevocationSync)
		case "public_url":
			err = one(&h.PublicURL)
		case "tls_trust_pool":
			if !d.NextArg() {
				return d.ArgErr()
			}
			modStem := d.Val()
			unm, err := caddyfile.UnmarshalModule(d, "tls.ca_pool.source."+modStem)
			if err != nil {
				return err
			}
			if _, ok := unm.(caddytls.CA); !ok {
				return d.Errf("tls_trust_pool: %s is not a CA pool source", modStem)
			}
			h.TrustPoolRaw = caddyconfig.JSONModuleObject(unm, "provider", modStem, nil)
		case "identity_assertion":
			h.IdentityAssertion = "X-B2C-Identity-Assertion"
			if d.NextArg() {
				h.IdentityAssertion = d.Val()
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		case "assertion_audience":
			err = many(&h.AssertionAudience)
		case "groups":
			err = one(&h.Groups)
		case "keep_groups":
			err = one(&h.KeepGroups)
		case "graph_endpoint":
			err = one(&h.GraphEndpoint)
		case "graph_login":
			err = one(&h.GraphLogin)
		case "domain_hint":
			err = one(&h.DomainHint)
		case "ui_locales":
			err = one(&h.UILocales)
		case "allow", "deny":
			args := d.RemainingArgs()
			if len(args) < 2 {
				return d.Errf("%s: want <claim> <pattern...>", name)
			}
			rule := Rule{Claim: args[0], Patterns: args[1:]}
			if name == "allow" {
				h.Allow = append(h.Allow, rule)
			} else {
				h.Deny = append(h.Deny, rule)
			}
		case "easy_auth_headers", "expose_idp_access_token":
			if d.NextArg() {
				return d.ArgErr()
			}
			*map[string]*bool{"easy_auth_headers": &h.EasyAuthHeaders, "expose_idp_access_token": &h.ExposeIDPAccessToken}[name] = true
		default:
			return d.Errf("unknown subdirective %q%s", name, suggest.DidYouMean(name, subdirectives))
		}
		if err != nil {
			return err
		}
	}
	if err := h.checkConfig(); err != nil {
		return d.Errf("b2c_auth: %v", err)
	}
	return nil
}

// subdirectives are the names a b2c_auth block takes, for "did you mean".
var subdirectives = []string{"identity_assertion", "assertion_audience", "groups", "keep_groups", "graph_endpoint", "graph_login", "tenant", "authority", "issuer", "external_id", "custom_domain", "tenants", "policy", "password_reset_policy", "profile_edit_policy", "client_id", "client_secret", "client_certificate", "client_assertion", "redirect_path", "response_mode", "unauthenticated", "cors_preflight", "refresh", "scopes", "cookie_secret", "audience", "require_scopes", "require_roles", "additional_issuer", "session_lifetime", "inactivity_timeout", "session_store", "session_tokens", "revocation_sync", "public_url", "tls_trust_pool", "domain_hint", "ui_locales", "allow", "deny", "easy_auth_headers", "expose_idp_access_token"}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
