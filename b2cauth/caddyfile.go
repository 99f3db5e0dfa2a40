package b2cauth

import (
	"encoding/json"

	"github.com/caddy-b2c/caddy-b2c/internal/subdirective"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
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
//	    external_id <subdomain> [<tenant ID>]
//	    tenants <tenant ID...>|*
//	    policy                <user flow>
//	    password_reset_policy <user flow>
//	    profile_edit_policy   <user flow>
//	    client_id     <id>
//	    client_secret <secret>
//	    client_certificate <cert path> <key path>
//	    client_assertion file <path> | managed_identity <client ID> [<audience>]
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
//	    require_auth_context <id...>
//	    require_recent_signin <duration>
//	    require_policy <policy...>
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
//	    graph_groups security|all
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
	if err := subdirectives.ParseBlock(h, d); err != nil {
		return err
	}
	if err := h.checkConfig(); err != nil {
		return d.Errf("b2c_auth: %v", err)
	}
	return nil
}

// rule parses an allow or deny line: <claim> <pattern...>.
func rule(key string, field func(*Handler) *[]Rule) subdirective.Line[Handler] {
	return subdirective.Line[Handler]{Key: key, Parse: func(h *Handler, d *caddyfile.Dispenser) error {
		args := d.RemainingArgs()
		if len(args) < 2 {
			return d.Errf("%s: want <claim> <pattern...>", key)
		}
		*field(h) = append(*field(h), Rule{Claim: args[0], Patterns: args[1:]})
		return nil
	}}
}

// subdirectives are the lines a b2c_auth block takes, by name, each with
// the JSON key it writes. The table drives the parser, its "did you mean"
// and the options reference test (docs/options.md).
var subdirectives = subdirective.Table[Handler]{
	"tenant":    subdirective.One("tenant", func(h *Handler) *string { return &h.Tenant }),
	"authority": subdirective.One("authority", func(h *Handler) *string { return &h.Authority }),
	"issuer":    subdirective.One("issuer", func(h *Handler) *string { return &h.Issuer }),
	"external_id": {Key: "external_id", Parse: func(h *Handler, d *caddyfile.Dispenser) error {
		switch args := d.RemainingArgs(); len(args) {
		case 1:
			h.ExternalID = args[0]
		case 2:
			h.ExternalID, h.ExternalIDTenant = args[0], args[1]
		default:
			return d.Errf("external_id: want <subdomain> [<tenant ID>]")
		}
		return nil
	}},
	"custom_domain":           subdirective.One("custom_domain", func(h *Handler) *string { return &h.CustomDomain }),
	"tenants":                 subdirective.Append("tenants", func(h *Handler) *[]string { return &h.Tenants }),
	"policy":                  subdirective.One("policy", func(h *Handler) *string { return &h.Policy }),
	"password_reset_policy":   subdirective.One("password_reset_policy", func(h *Handler) *string { return &h.PasswordResetPolicy }),
	"profile_edit_policy":     subdirective.One("profile_edit_policy", func(h *Handler) *string { return &h.ProfileEditPolicy }),
	"client_id":               subdirective.One("client_id", func(h *Handler) *string { return &h.ClientID }),
	"client_secret":           subdirective.One("client_secret", func(h *Handler) *string { return &h.ClientSecret }),
	"redirect_path":           subdirective.One("redirect_path", func(h *Handler) *string { return &h.RedirectPath }),
	"response_mode":           subdirective.One("response_mode", func(h *Handler) *string { return &h.ResponseMode }),
	"unauthenticated":         subdirective.One("unauthenticated", func(h *Handler) *string { return &h.Unauthenticated }),
	"cors_preflight":          subdirective.One("cors_preflight", func(h *Handler) *string { return &h.CORSPreflight }),
	"refresh":                 subdirective.One("refresh", func(h *Handler) *string { return &h.Refresh }),
	"scopes":                  subdirective.Append("scopes", func(h *Handler) *[]string { return &h.Scopes }),
	"cookie_secret":           subdirective.Append("cookie_secret", func(h *Handler) *[]string { return &h.CookieSecret }),
	"audience":                subdirective.Append("audience", func(h *Handler) *[]string { return &h.Audience }),
	"require_scopes":          subdirective.Append("require_scopes", func(h *Handler) *[]string { return &h.RequireScopes }),
	"require_roles":           subdirective.Append("require_roles", func(h *Handler) *[]string { return &h.RequireRoles }),
	"require_auth_context":    subdirective.Append("require_auth_context", func(h *Handler) *[]string { return &h.RequireAuthContext }),
	"require_recent_signin":   subdirective.Duration("require_recent_signin", func(h *Handler) *caddy.Duration { return &h.RequireRecentSignin }),
	"require_policy":          subdirective.Append("require_policy", func(h *Handler) *[]string { return &h.RequirePolicy }),
	"session_lifetime":        subdirective.Duration("session_lifetime", func(h *Handler) *caddy.Duration { return &h.SessionLifetime }),
	"session_store":           subdirective.One("session_store", func(h *Handler) *string { return &h.SessionStore }),
	"session_tokens":          subdirective.Append("session_tokens", func(h *Handler) *[]string { return &h.SessionTokens }),
	"inactivity_timeout":      subdirective.Duration("inactivity_timeout", func(h *Handler) *caddy.Duration { return &h.InactivityTimeout }),
	"revocation_sync":         subdirective.Duration("revocation_sync", func(h *Handler) *caddy.Duration { return &h.RevocationSync }),
	"public_url":              subdirective.One("public_url", func(h *Handler) *string { return &h.PublicURL }),
	"assertion_audience":      subdirective.Append("assertion_audience", func(h *Handler) *[]string { return &h.AssertionAudience }),
	"groups":                  subdirective.One("groups", func(h *Handler) *string { return &h.Groups }),
	"keep_groups":             subdirective.One("keep_groups", func(h *Handler) *string { return &h.KeepGroups }),
	"graph_groups":            subdirective.One("graph_groups", func(h *Handler) *string { return &h.GraphGroups }),
	"graph_endpoint":          subdirective.One("graph_endpoint", func(h *Handler) *string { return &h.GraphEndpoint }),
	"graph_login":             subdirective.One("graph_login", func(h *Handler) *string { return &h.GraphLogin }),
	"domain_hint":             subdirective.One("domain_hint", func(h *Handler) *string { return &h.DomainHint }),
	"ui_locales":              subdirective.One("ui_locales", func(h *Handler) *string { return &h.UILocales }),
	"allow":                   rule("allow", func(h *Handler) *[]Rule { return &h.Allow }),
	"deny":                    rule("deny", func(h *Handler) *[]Rule { return &h.Deny }),
	"easy_auth_headers":       subdirective.Flag("easy_auth_headers", func(h *Handler) *bool { return &h.EasyAuthHeaders }),
	"expose_idp_access_token": subdirective.Flag("expose_idp_access_token", func(h *Handler) *bool { return &h.ExposeIDPAccessToken }),
	"client_certificate": {Key: "client_certificate", Parse: func(h *Handler, d *caddyfile.Dispenser) error {
		h.ClientCertificate = &CertificateFiles{}
		if !d.AllArgs(&h.ClientCertificate.Cert, &h.ClientCertificate.Key) {
			return d.Errf("client_certificate: needs <cert path> <key path> (PEM)")
		}
		return nil
	}},
	"client_assertion": {Key: "client_assertion", Parse: func(h *Handler, d *caddyfile.Dispenser) error {
		h.ClientAssertion = &ClientAssertion{}
		switch args := d.RemainingArgs(); {
		case len(args) == 2:
			h.ClientAssertion.Kind, h.ClientAssertion.Value = args[0], args[1]
		case len(args) == 3 && args[0] == "managed_identity":
			h.ClientAssertion.Kind, h.ClientAssertion.Value, h.ClientAssertion.Audience = args[0], args[1], args[2]
		default:
			return d.Errf("client_assertion: needs file <path> or managed_identity <client ID> [<audience>]")
		}
		return nil
	}},
	"additional_issuer": {Key: "additional_issuers", Parse: func(h *Handler, d *caddyfile.Dispenser) error {
		switch args := d.RemainingArgs(); len(args) {
		case 1:
			h.AdditionalIssuers = append(h.AdditionalIssuers, AdditionalIssuer{Metadata: args[0]})
		case 2:
			h.AdditionalIssuers = append(h.AdditionalIssuers, AdditionalIssuer{Issuer: args[0], JWKSURI: args[1]})
		default:
			return d.Errf("additional_issuer: want <metadata URL>, or <issuer> <jwks URL>")
		}
		return nil
	}},
	"tls_trust_pool": {Key: "tls_trust_pool", Parse: func(h *Handler, d *caddyfile.Dispenser) error {
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
		return nil
	}},
	"identity_assertion": {Key: "identity_assertion", Parse: func(h *Handler, d *caddyfile.Dispenser) error {
		h.IdentityAssertion = "X-B2C-Identity-Assertion"
		if d.NextArg() {
			h.IdentityAssertion = d.Val()
		}
		if d.NextArg() {
			return d.ArgErr()
		}
		return nil
	}},
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
