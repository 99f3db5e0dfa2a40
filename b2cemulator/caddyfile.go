package b2cemulator

import (
	"maps"
	"slices"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-b2c/caddy-b2c/internal/guid"
	"github.com/caddy-b2c/caddy-b2c/internal/suggest"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("b2c_emulator", parseCaddyfile)
	// Before every auth directive, so that a b2c_auth on the same site never
	// guards the tenant's own endpoints; other paths pass through.
	httpcaddyfile.RegisterDirectiveOrder("b2c_emulator", httpcaddyfile.After, "try_files")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	e := new(Emulator)
	err := e.UnmarshalCaddyfile(h.Dispenser)
	return e, err
}

// UnmarshalCaddyfile sets up the emulator from Caddyfile tokens:
//
//	b2c_emulator [<matcher>] {
//	    tenant         <name>
//	    tenant_id      <guid>
//	    policies       <policy...>
//	    client <client_id> [<secret>] {
//	        redirect_uri <url...>
//	    }
//	    user <email> <password> {
//	        object_id   <guid>
//	        name        <display name>
//	        given_name  <name>
//	        family_name <name>
//	        idp         <identity provider>
//	        claim       <name> <value>
//	    }
//	    token_lifetime <duration>
//	    issuer_form    tenant_id|tfp
//	    policy_claim   tfp|acr
//	    persist_keys
//	    allow_remote
//	}
func (e *Emulator) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
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
		if err := sub.parse(e, d); err != nil {
			return err
		}
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Emulator)(nil)

// subdirective is one line of a b2c_emulator block: how it is parsed, and
// the JSON key it writes. The table drives the parser, its "did you mean"
// and the options reference test (docs/options.md).
type subdirective struct {
	key   string // the JSON key
	parse func(e *Emulator, d *caddyfile.Dispenser) error
}

// subdirectives are the lines a b2c_emulator block takes, by name.
var subdirectives = map[string]subdirective{
	"tenant":                      text("tenant", func(e *Emulator) *string { return &e.Tenant }),
	"tenant_id":                   {"tenant_id", parseTenantID},
	"policies":                    list("policies", func(e *Emulator) *[]string { return &e.Policies }),
	"self_service_password_reset": list("self_service_password_reset", func(e *Emulator) *[]string { return &e.SelfServicePasswordReset }),
	"mfa_policies":                list("mfa_policies", func(e *Emulator) *[]string { return &e.MFAPolicies }),
	"auth_contexts":               list("auth_contexts", func(e *Emulator) *[]string { return &e.AuthContexts }),
	"client":                      {"clients", parseClient},
	"managed_identity":            {"managed_identities", parseManagedIdentity},
	"api":                         {"apis", parseAPI},
	"user":                        {"users", parseUser},
	"group":                       {"groups", parseGroup},
	"token_lifetime":              duration("token_lifetime", func(e *Emulator) *caddy.Duration { return &e.TokenLifetime }),
	"refresh_token_lifetime":      duration("refresh_token_lifetime", func(e *Emulator) *caddy.Duration { return &e.RefreshTokenLifetime }),
	"refresh_token_window":        duration("refresh_token_window", func(e *Emulator) *caddy.Duration { return &e.RefreshTokenWindow }),
	"sso_session_lifetime":        duration("sso_session_lifetime", func(e *Emulator) *caddy.Duration { return &e.SSOSessionLifetime }),
	"keep_me_signed_in":           duration("keep_me_signed_in", func(e *Emulator) *caddy.Duration { return &e.KeepMeSignedIn }),
	"graph_delay":                 duration("graph_delay", func(e *Emulator) *caddy.Duration { return &e.GraphDelay }),
	"issuer_form":                 choice("issuer_form", func(e *Emulator) *string { return &e.IssuerForm }, "tenant_id", "tfp"),
	"sso_session_timeout":         choice("sso_session_timeout", func(e *Emulator) *string { return &e.SSOSessionTimeout }, "rolling", "absolute"),
	"token_numbers":               choice("token_numbers", func(e *Emulator) *string { return &e.TokenNumbers }, "number", "string"),
	"policy_claim":                choice("policy_claim", func(e *Emulator) *string { return &e.PolicyClaim }, "tfp", "acr"),
	"subject":                     choice("subject", func(e *Emulator) *string { return &e.Subject }, "object_id", "not_supported"),
	"sso_scope":                   choice("sso_scope", func(e *Emulator) *string { return &e.SSOScope }, "tenant", "application"),
	"graph_throttle":              count("graph_throttle", func(e *Emulator) *int { return &e.GraphThrottle }, 0),
	"groups_overage":              count("groups_overage", func(e *Emulator) *int { return &e.GroupsOverage }, 1),
	"admin_key":                   text("admin_key", func(e *Emulator) *string { return &e.AdminKey }),
	"persist_keys":                flag("persist_keys", func(e *Emulator) *bool { return &e.PersistKeys }),
	"allow_remote":                flag("allow_remote", func(e *Emulator) *bool { return &e.AllowRemote }),
	"sid_claim":                   flag("sid_claim", func(e *Emulator) *bool { return &e.SIDClaim }),
	"logout_requires_id_token":    flag("logout_requires_id_token", func(e *Emulator) *bool { return &e.LogoutRequiresIDToken }),
	"at_hash":                     flag("at_hash", func(e *Emulator) *bool { return &e.AtHash }),
	"multi_tenant":                flag("multi_tenant", func(e *Emulator) *bool { return &e.MultiTenant }),
	"policy_claims":               {"policy_claims", parsePolicyClaims},
	"flavor":                      {"flavor", parseFlavor},
}

// text parses a subdirective with exactly one argument into a field.
func text(key string, field func(*Emulator) *string) subdirective {
	return subdirective{key, func(e *Emulator, d *caddyfile.Dispenser) error {
		if !d.AllArgs(field(e)) {
			return d.ArgErr()
		}
		return nil
	}}
}

// choice parses a subdirective whose one argument must be a or b.
func choice(key string, field func(*Emulator) *string, a, b string) subdirective {
	return subdirective{key, func(e *Emulator, d *caddyfile.Dispenser) error {
		v := field(e)
		if !d.AllArgs(v) {
			return d.ArgErr()
		}
		if *v != a && *v != b {
			return d.Errf("%s: %q is neither %s nor %s", key, *v, a, b)
		}
		return nil
	}}
}

// duration parses a subdirective whose one argument is a duration.
func duration(key string, field func(*Emulator) *caddy.Duration) subdirective {
	return subdirective{key, func(e *Emulator, d *caddyfile.Dispenser) error {
		var s string
		if !d.AllArgs(&s) {
			return d.ArgErr()
		}
		v, err := caddy.ParseDuration(s)
		if err != nil {
			return d.Errf("%s: %v", key, err)
		}
		*field(e) = caddy.Duration(v)
		return nil
	}}
}

// count parses a subdirective whose one argument is a number of at least
// least.
func count(key string, field func(*Emulator) *int, least int) subdirective {
	return subdirective{key, func(e *Emulator, d *caddyfile.Dispenser) error {
		var n string
		if !d.AllArgs(&n) {
			return d.ArgErr()
		}
		v, err := strconv.Atoi(n)
		if err != nil || v < least {
			if least > 0 {
				return d.Errf("%s: %q is not a positive number", key, n)
			}
			return d.Errf("%s: %q is not a number", key, n)
		}
		*field(e) = v
		return nil
	}}
}

// flag parses a subdirective without arguments that turns a field on.
func flag(key string, field func(*Emulator) *bool) subdirective {
	return subdirective{key, func(e *Emulator, d *caddyfile.Dispenser) error {
		if d.NextArg() {
			return d.ArgErr()
		}
		*field(e) = true
		return nil
	}}
}

func parseTenantID(e *Emulator, d *caddyfile.Dispenser) error {
	if !d.AllArgs(&e.TenantID) {
		return d.ArgErr()
	}
	if !guid.Valid(e.TenantID) {
		return d.Errf("tenant_id: %q is not a GUID", e.TenantID)
	}
	return nil
}

// list parses a subdirective with one or more arguments into a field.
func list(key string, field func(*Emulator) *[]string) subdirective {
	return subdirective{key, func(e *Emulator, d *caddyfile.Dispenser) error {
		if *field(e) = d.RemainingArgs(); len(*field(e)) == 0 {
			return d.ArgErr()
		}
		return nil
	}}
}

func parsePolicyClaims(e *Emulator, d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) < 2 {
		return d.Errf("policy_claims: want <policy> <claim...>")
	}
	if e.PolicyClaims == nil {
		e.PolicyClaims = map[string][]string{}
	}
	e.PolicyClaims[args[0]] = append(e.PolicyClaims[args[0]], args[1:]...)
	return nil
}

func parseFlavor(e *Emulator, d *caddyfile.Dispenser) error {
	if !d.AllArgs(&e.Flavor) {
		return d.ArgErr()
	}
	if e.Flavor != FlavorB2C && e.Flavor != FlavorExternalID && e.Flavor != FlavorEntraID {
		return d.Errf("flavor: %q is not b2c, external_id or entra_id", e.Flavor)
	}
	return nil
}
