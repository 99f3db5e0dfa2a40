package b2cauth

import (
	"encoding/json"
	"maps"
	"slices"

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
	for d.NextBlock(0) {
		name := d.Val()
		sub, ok := subdirectives[name]
		if !ok {
			return d.Errf("unknown subdirective %q%s", name, suggest.DidYouMean(name, slices.Sorted(maps.Keys(subdirectives))))
		}
		if err := sub.parse(h, d); err != nil {
			return err
		}
	}
	if err := h.checkConfig(); err != nil {
		return d.Errf("b2c_auth: %v", err)
	}
	return nil
}

// subdirective is one line of a b2c_auth block: how it is parsed, and the
// JSON key it writes. The table drives the parser, its "did you mean" and
// the options reference test (docs/options.md).
type subdirective struct {
	key   string // the JSON key
	parse func(h *Handler, d *caddyfile.Dispenser) error
}

// one parses a subdirective with exactly one argument into a field.
func one(key string, field func(*Handler) *string) subdirective {
	return subdirective{key, func(h *Handler, d *caddyfile.Dispenser) error {
		if !d.AllArgs(field(h)) {
			return d.ArgErr()
		}
		return nil
	}}
}

// many parses a subdirective with one or more arguments, appended to a
// field (so the subdirective may be repeated).
func many(key string, field func(*Handler) *[]string) subdirective {
	return subdirective{key, func(h *Handler, d *caddyfile.Dispenser) error {
		dst := field(h)
		*dst = append(*dst, d.RemainingArgs()...)
		if len(*dst) == 0 {
			return d.ArgErr()
		}
		return nil
	}}
}

// duration parses a subdirective whose one argument is a duration.
func duration(key string, field func(*Handler) *caddy.Duration) subdirective {
	return subdirective{key, func(h *Handler, d *caddyfile.Dispenser) error {
		var s string
		if !d.AllArgs(&s) {
			return d.ArgErr()
		}
		v, err := caddy.ParseDuration(s)
		if err != nil {
			return d.Errf("%s: %v", key, err)
		}
		*field(h) = caddy.Duration(v)
		return nil
	}}
}

// flag parses a subdirective without arguments that turns a field on.
func flag(key string, field func(*Handler) *bool) subdirective {
	return subdirective{key, func(h *Handler, d *caddyfile.Dispenser) error {
		if d.NextArg() {
			return d.ArgErr()
		}
		*field(h) = true
		return nil
	}}
}

// rule parses an allow or deny line: <claim> <pattern...>.
func rule(key string, field func(*Handler) *[]Rule) subdirective {
	return subdirective{key, func(h *Handler, d *caddyfile.Dispenser) error {
		args := d.RemainingArgs()
		if len(args) < 2 {
			return d.Errf("%s: want <claim> <pattern...>", key)
		}
		*field(h) = append(*field(h), Rule{Claim: args[0], Patterns: args[1:]})
		return nil
	}}
}

// subdirectives are the lines a b2c_auth block takes, by name.
var subdirectives = map[string]subdirective{
	"tenant":    one("tenant", func(h *Handler) *string { return &h.Tenant }),
	"authority": one("authority", func(h *Handler) *string { return &h.Authority }),
	"issuer":    one("issuer", func(h *Handler) *string { return &h.Issuer }),
	"external_id": {"external_id", func(h *Handler, d *caddyfile.Dispenser) error {
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
	"custom_domain":           one("custom_domain", func(h *Handler) *string { return &h.CustomDomain }),
	"tenants":                 many("tenants", func(h *Handler) *[]string { return &h.Tenants }),
	"policy":                  one("policy", func(h *Handler) *string { return &h.Policy }),
	"password_reset_policy":   one("password_reset_policy", func(h *Handler) *string { return &h.PasswordResetPolicy }),
	"profile_edit_policy":     one("profile_edit_policy", func(h *Handler) *string { return &h.ProfileEditPolicy }),
	"client_id":               one("client_id", func(h *Handler) *string { return &h.ClientID }),
	"client_secret":           one("client_secret", func(h *Handler) *string { return &h.ClientSecret }),
	"redirect_path":           one("redirect_path", func(h *Handler) *string { return &h.RedirectPath }),
	"response_mode":           one("response_mode", func(h *Handler) *string { return &h.ResponseMode }),
	"unauthenticated":         one("unauthenticated", func(h *Handler) *string { return &h.Unauthenticated }),
	"cors_preflight":          one("cors_preflight", func(h *Handler) *string { return &h.CORSPreflight }),
	"refresh":                 one("refresh", func(h *Handler) *string { return &h.Refresh }),
	"scopes":                  many("scopes", func(h *Handler) *[]string { return &h.Scopes }),
	"cookie_secret":           many("cookie_secret", func(h *Handler) *[]string { return &h.CookieSecret }),
	"audience":                many("audience", func(h *Handler) *[]string { return &h.Audience }),
	"require_scopes":          many("require_scopes", func(h *Handler) *[]string { return &h.RequireScopes }),
	"require_roles":           many("require_roles", func(h *Handler) *[]string { return &h.RequireRoles }),
	"require_auth_context":    many("require_auth_context", func(h *Handler) *[]string { return &h.RequireAuthContext }),
	"require_recent_signin":   duration("require_recent_signin", func(h *Handler) *caddy.Duration { return &h.RequireRecentSignin }),
	"require_policy":          many("require_policy", func(h *Handler) *[]string { return &h.RequirePolicy }),
	"session_lifetime":        duration("session_lifetime", func(h *Handler) *caddy.Duration { return &h.SessionLifetime }),
	"session_store":           one("session_store", func(h *Handler) *string { return &h.SessionStore }),
	"session_tokens":          many("session_tokens", func(h *Handler) *[]string { return &h.SessionTokens }),
	"inactivity_timeout":      duration("inactivity_timeout", func(h *Handler) *caddy.Duration { return &h.InactivityTimeout }),
	"revocation_sync":         duration("revocation_sync", func(h *Handler) *caddy.Duration { return &h.RevocationSync }),
	"public_url":              one("public_url", func(h *Handler) *string { return &h.PublicURL }),
	"assertion_audience":      many("assertion_audience", func(h *Handler) *[]string { return &h.AssertionAudience }),
	"groups":                  one("groups", func(h *Handler) *string { return &h.Groups }),
	"keep_groups":             one("keep_groups", func(h *Handler) *string { return &h.KeepGroups }),
	"graph_groups":            one("graph_groups", func(h *Handler) *string { return &h.GraphGroups }),
	"graph_endpoint":          one("graph_endpoint", func(h *Handler) *string { return &h.GraphEndpoint }),
	"graph_login":             one("graph_login", func(h *Handler) *string { return &h.GraphLogin }),
	"domain_hint":             one("domain_hint", func(h *Handler) *string { return &h.DomainHint }),
	"ui_locales":              one("ui_locales", func(h *Handler) *string { return &h.UILocales }),
	"allow":                   rule("allow", func(h *Handler) *[]Rule { return &h.Allow }),
	"deny":                    rule("deny", func(h *Handler) *[]Rule { return &h.Deny }),
	"easy_auth_headers":       flag("easy_auth_headers", func(h *Handler) *bool { return &h.EasyAuthHeaders }),
	"expose_idp_access_token": flag("expose_idp_access_token", func(h *Handler) *bool { return &h.ExposeIDPAccessToken }),
	"client_certificate": {"client_certificate", func(h *Handler, d *caddyfile.Dispenser) error {
		h.ClientCertificate = &CertificateFiles{}
		if !d.AllArgs(&h.ClientCertificate.Cert, &h.ClientCertificate.Key) {
			return d.Errf("client_certificate: needs <cert path> <key path> (PEM)")
		}
		return nil
	}},
	"client_assertion": {"client_assertion", func(h *Handler, d *caddyfile.Dispenser) error {
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
	"additional_issuer": {"additional_issuers", func(h *Handler, d *caddyfile.Dispenser) error {
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
	"tls_trust_pool": {"tls_trust_pool", func(h *Handler, d *caddyfile.Dispenser) error {
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
	"identity_assertion": {"identity_assertion", func(h *Handler, d *caddyfile.Dispenser) error {
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
