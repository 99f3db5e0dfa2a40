package b2cemulator

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-b2c/caddy-b2c/internal/guid"
	"github.com/caddy-b2c/caddy-b2c/internal/subdirective"
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
	return subdirectives.ParseBlock(e, d)
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Emulator)(nil)

// subdirectives are the lines a b2c_emulator block takes, by name, each
// with the JSON key it writes. The table drives the parser, its "did you
// mean" and the options reference test (docs/options.md).
var subdirectives = subdirective.Table[Emulator]{
	"tenant":                      subdirective.One("tenant", func(e *Emulator) *string { return &e.Tenant }),
	"tenant_id":                   {Key: "tenant_id", Parse: parseTenantID},
	"policies":                    subdirective.List("policies", func(e *Emulator) *[]string { return &e.Policies }),
	"self_service_password_reset": subdirective.List("self_service_password_reset", func(e *Emulator) *[]string { return &e.SelfServicePasswordReset }),
	"mfa_policies":                subdirective.List("mfa_policies", func(e *Emulator) *[]string { return &e.MFAPolicies }),
	"auth_contexts":               subdirective.List("auth_contexts", func(e *Emulator) *[]string { return &e.AuthContexts }),
	"client":                      {Key: "clients", Parse: parseClient},
	"managed_identity":            {Key: "managed_identities", Parse: parseManagedIdentity},
	"api":                         {Key: "apis", Parse: parseAPI},
	"user":                        {Key: "users", Parse: parseUser},
	"group":                       {Key: "groups", Parse: parseGroup},
	"token_lifetime":              subdirective.Duration("token_lifetime", func(e *Emulator) *caddy.Duration { return &e.TokenLifetime }),
	"refresh_token_lifetime":      subdirective.Duration("refresh_token_lifetime", func(e *Emulator) *caddy.Duration { return &e.RefreshTokenLifetime }),
	"refresh_token_window":        subdirective.Duration("refresh_token_window", func(e *Emulator) *caddy.Duration { return &e.RefreshTokenWindow }),
	"sso_session_lifetime":        subdirective.Duration("sso_session_lifetime", func(e *Emulator) *caddy.Duration { return &e.SSOSessionLifetime }),
	"keep_me_signed_in":           subdirective.Duration("keep_me_signed_in", func(e *Emulator) *caddy.Duration { return &e.KeepMeSignedIn }),
	"graph_delay":                 subdirective.Duration("graph_delay", func(e *Emulator) *caddy.Duration { return &e.GraphDelay }),
	"issuer_form":                 subdirective.Choice("issuer_form", func(e *Emulator) *string { return &e.IssuerForm }, "tenant_id", "tfp"),
	"sso_session_timeout":         subdirective.Choice("sso_session_timeout", func(e *Emulator) *string { return &e.SSOSessionTimeout }, "rolling", "absolute"),
	"token_numbers":               subdirective.Choice("token_numbers", func(e *Emulator) *string { return &e.TokenNumbers }, "number", "string"),
	"policy_claim":                subdirective.Choice("policy_claim", func(e *Emulator) *string { return &e.PolicyClaim }, "tfp", "acr"),
	"subject":                     subdirective.Choice("subject", func(e *Emulator) *string { return &e.Subject }, "object_id", "not_supported"),
	"sso_scope":                   subdirective.Choice("sso_scope", func(e *Emulator) *string { return &e.SSOScope }, "tenant", "application"),
	"graph_throttle":              subdirective.Count("graph_throttle", func(e *Emulator) *int { return &e.GraphThrottle }, 0),
	"groups_overage":              subdirective.Count("groups_overage", func(e *Emulator) *int { return &e.GroupsOverage }, 1),
	"admin_key":                   subdirective.One("admin_key", func(e *Emulator) *string { return &e.AdminKey }),
	"persist_keys":                subdirective.Flag("persist_keys", func(e *Emulator) *bool { return &e.PersistKeys }),
	"allow_remote":                subdirective.Flag("allow_remote", func(e *Emulator) *bool { return &e.AllowRemote }),
	"sid_claim":                   subdirective.Flag("sid_claim", func(e *Emulator) *bool { return &e.SIDClaim }),
	"logout_requires_id_token":    subdirective.Flag("logout_requires_id_token", func(e *Emulator) *bool { return &e.LogoutRequiresIDToken }),
	"at_hash":                     subdirective.Flag("at_hash", func(e *Emulator) *bool { return &e.AtHash }),
	"multi_tenant":                subdirective.Flag("multi_tenant", func(e *Emulator) *bool { return &e.MultiTenant }),
	"policy_claims":               {Key: "policy_claims", Parse: parsePolicyClaims},
	"flavor":                      {Key: "flavor", Parse: parseFlavor},
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
