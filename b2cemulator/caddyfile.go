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

// oneOf reads a subdirective's single argument into v, which must be a or b.
func oneOf(d *caddyfile.Dispenser, v *string, a, b string) error {
	name := d.Val()
	if !d.AllArgs(v) {
		return d.ArgErr()
	}
	if *v != a && *v != b {
		return d.Errf("%s: %q is neither %s nor %s", name, *v, a, b)
	}
	return nil
}

// subdirective is one line of a b2c_emulator block: how it is parsed, and
// the JSON key it writes. The table drives the parser, its "did you mean"
// and the README's options reference test.
type subdirective struct {
	key   string // the JSON key
	parse func(e *Emulator, d *caddyfile.Dispenser) error
}

// subdirectives are the lines a b2c_emulator block takes, by name.
var subdirectives = map[string]subdirective{
	"tenant":                   {"tenant", parseTenant},
	"tenant_id":                {"tenant_id", parseTenantID},
	"policies":                 {"policies", parsePolicies},
	"client":                   {"clients", parseClient},
	"managed_identity":         {"managed_identities", parseManagedIdentity},
	"api":                      {"apis", parseAPI},
	"user":                     {"users", parseUser},
	"token_lifetime":           {"token_lifetime", parseDuration},
	"refresh_token_lifetime":   {"refresh_token_lifetime", parseDuration},
	"refresh_token_window":     {"refresh_token_window", parseDuration},
	"sso_session_lifetime":     {"sso_session_lifetime", parseDuration},
	"keep_me_signed_in":        {"keep_me_signed_in", parseDuration},
	"issuer_form":              {"issuer_form", parseIssuerForm},
	"sso_session_timeout":      {"sso_session_timeout", parseSSOSessionTimeout},
	"token_numbers":            {"token_numbers", parseTokenNumbers},
	"policy_claim":             {"policy_claim", parsePolicyClaim},
	"group":                    {"groups", parseGroup},
	"graph_throttle":           {"graph_throttle", parseGraphThrottle},
	"graph_delay":              {"graph_delay", parseGraphDelay},
	"groups_overage":           {"groups_overage", parseGroupsOverage},
	"admin_key":                {"admin_key", parseAdminKey},
	"persist_keys":             {"persist_keys", parsePersistKeys},
	"allow_remote":             {"allow_remote", parseFlag},
	"sid_claim":                {"sid_claim", parseFlag},
	"logout_requires_id_token": {"logout_requires_id_token", parseFlag},
	"at_hash":                  {"at_hash", parseFlag},
	"subject":                  {"subject", parseSubject},
	"policy_claims":            {"policy_claims", parsePolicyClaims},
	"flavor":                   {"flavor", parseFlavor},
	"multi_tenant":             {"multi_tenant", parseMultiTenant},
	"sso_scope":                {"sso_scope", parseSSOScope},
}

// The parsers of the subdirectives, in the table's order. A parser shared
// by several (durations, flags) tells them apart by d.Val(), the name.

func parseTenant(e *Emulator, d *caddyfile.Dispenser) error {
	if !d.AllArgs(&e.Tenant) {
		return d.ArgErr()
	}
	return nil
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

func parsePolicies(e *Emulator, d *caddyfile.Dispenser) error {
	e.Policies = d.RemainingArgs()
	if len(e.Policies) == 0 {
		return d.ArgErr()
	}
	return nil
}

func parseDuration(e *Emulator, d *caddyfile.Dispenser) error {
	name := d.Val()
	if !d.NextArg() {
		return d.ArgErr()
	}
	dur, err := caddy.ParseDuration(d.Val())
	if err != nil {
		return d.Errf("%s: %v", name, err)
	}
	*map[string]*caddy.Duration{"token_lifetime": &e.TokenLifetime, "refresh_token_lifetime": &e.RefreshTokenLifetime, "refresh_token_window": &e.RefreshTokenWindow,
		"sso_session_lifetime": &e.SSOSessionLifetime, "keep_me_signed_in": &e.KeepMeSignedIn}[name] = caddy.Duration(dur)
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func parseIssuerForm(e *Emulator, d *caddyfile.Dispenser) error {
	if err := oneOf(d, &e.IssuerForm, "tenant_id", "tfp"); err != nil {
		return err
	}
	return nil
}

func parseSSOSessionTimeout(e *Emulator, d *caddyfile.Dispenser) error {
	if err := oneOf(d, &e.SSOSessionTimeout, "rolling", "absolute"); err != nil {
		return err
	}
	return nil
}

func parseTokenNumbers(e *Emulator, d *caddyfile.Dispenser) error {
	if err := oneOf(d, &e.TokenNumbers, "number", "string"); err != nil {
		return err
	}
	return nil
}

func parsePolicyClaim(e *Emulator, d *caddyfile.Dispenser) error {
	if err := oneOf(d, &e.PolicyClaim, "tfp", "acr"); err != nil {
		return err
	}
	return nil
}

func parseGraphThrottle(e *Emulator, d *caddyfile.Dispenser) error {
	var n string
	if !d.AllArgs(&n) {
		return d.ArgErr()
	}
	v, err := strconv.Atoi(n)
	if err != nil || v < 0 {
		return d.Errf("graph_throttle: %q is not a number", n)
	}
	e.GraphThrottle = v
	return nil
}

func parseGraphDelay(e *Emulator, d *caddyfile.Dispenser) error {
	var s string
	if !d.AllArgs(&s) {
		return d.ArgErr()
	}
	v, err := caddy.ParseDuration(s)
	if err != nil {
		return d.Errf("graph_delay: %v", err)
	}
	e.GraphDelay = caddy.Duration(v)
	return nil
}

func parseGroupsOverage(e *Emulator, d *caddyfile.Dispenser) error {
	var n string
	if !d.AllArgs(&n) {
		return d.ArgErr()
	}
	v, err := strconv.Atoi(n)
	if err != nil || v < 1 {
		return d.Errf("groups_overage: %q is not a positive number", n)
	}
	e.GroupsOverage = v
	return nil
}

func parseAdminKey(e *Emulator, d *caddyfile.Dispenser) error {
	if !d.AllArgs(&e.AdminKey) {
		return d.ArgErr()
	}
	return nil
}

func parsePersistKeys(e *Emulator, d *caddyfile.Dispenser) error {
	e.PersistKeys = true
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func parseFlag(e *Emulator, d *caddyfile.Dispenser) error {
	flag := map[string]*bool{"allow_remote": &e.AllowRemote, "sid_claim": &e.SIDClaim, "logout_requires_id_token": &e.LogoutRequiresIDToken, "at_hash": &e.AtHash}[d.Val()]
	*flag = true
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func parseSubject(e *Emulator, d *caddyfile.Dispenser) error {
	if err := oneOf(d, &e.Subject, "object_id", "not_supported"); err != nil {
		return err
	}
	return nil
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

func parseMultiTenant(e *Emulator, d *caddyfile.Dispenser) error {
	e.MultiTenant = true
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func parseSSOScope(e *Emulator, d *caddyfile.Dispenser) error {
	if err := oneOf(d, &e.SSOScope, "tenant", "application"); err != nil {
		return err
	}
	return nil
}
