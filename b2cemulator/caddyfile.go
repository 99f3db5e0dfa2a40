package b2cemulator

import (
	"encoding/json"
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
		switch d.Val() {
		case "tenant":
			if !d.AllArgs(&e.Tenant) {
				return d.ArgErr()
			}
		case "tenant_id":
			if !d.AllArgs(&e.TenantID) {
				return d.ArgErr()
			}
			if !guid.Valid(e.TenantID) {
				return d.Errf("tenant_id: %q is not a GUID", e.TenantID)
			}
		case "policies":
			e.Policies = d.RemainingArgs()
			if len(e.Policies) == 0 {
				return d.ArgErr()
			}
		case "client":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.ArgErr()
			}
			c := Client{ClientID: args[0]}
			if len(args) == 2 {
				c.Secret = args[1]
			}
			for _, other := range e.Clients {
				if other.ClientID == c.ClientID {
					return d.Errf("client: %q is registered twice", c.ClientID)
				}
			}
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				switch d.Val() {
				case "redirect_uri":
					uris := d.RemainingArgs()
					if len(uris) == 0 {
						return d.ArgErr()
					}
					c.RedirectURIs = append(c.RedirectURIs, uris...)
				case "platform":
					if !d.AllArgs(&c.Platform) {
						return d.ArgErr()
					}
				case "front_channel_logout_uri":
					if !d.AllArgs(&c.FrontChannelLogoutURI) {
						return d.ArgErr()
					}
				case "app_role":
					if err := parseAppRole(d, &c.AppRoles); err != nil {
						return err
					}
				case "certificate":
					if !d.AllArgs(new(string)) {
						return d.ArgErr()
					}
					c.Certificates = append(c.Certificates, d.Val())
				case "optional_claims":
					c.OptionalClaims = append(c.OptionalClaims, d.RemainingArgs()...)
				case "federated_credential":
					args := d.RemainingArgs()
					if len(args) < 2 || len(args) > 3 {
						return d.Errf("federated_credential: want <issuer> <subject> [<audience>]")
					}
					fc := FederatedCredential{Issuer: args[0], Subject: args[1]}
					if len(args) == 3 {
						fc.Audiences = []string{args[2]}
					}
					c.FederatedCredentials = append(c.FederatedCredentials, fc)
				case "graph_permission":
					c.GraphPermissions = append(c.GraphPermissions, d.RemainingArgs()...)
				default:
					return d.Errf("client: unknown subdirective %q", d.Val())
				}
			}
			e.Clients = append(e.Clients, c)
		case "managed_identity":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.Errf("managed_identity: want <client id> [<object id>]")
			}
			m := ManagedIdentity{ClientID: args[0]}
			if len(args) == 2 {
				m.ObjectID = args[1]
			}
			e.ManagedIdentities = append(e.ManagedIdentities, m)
		case "api":
			a := API{}
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.Errf("api: want <app id uri> [<client id>]")
			}
			a.AppIDURI = args[0]
			if len(args) == 2 {
				a.ClientID = args[1]
			}
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				switch d.Val() {
				case "scopes":
					a.Scopes = append(a.Scopes, d.RemainingArgs()...)
				case "app_role":
					if err := parseAppRole(d, &a.AppRoles); err != nil {
						return err
					}
				default:
					return d.Errf("api: unknown subdirective %q", d.Val())
				}
			}
			e.APIs = append(e.APIs, a)
		case "user":
			var u User
			if !d.AllArgs(&u.Email, &u.Password) {
				return d.ArgErr()
			}
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				key := d.Val()
				switch key {
				case "object_id", "name", "given_name", "family_name", "idp", "tenant_id":
					var v string
					if !d.AllArgs(&v) {
						return d.ArgErr()
					}
					switch key {
					case "object_id":
						u.ObjectID = v
					case "name":
						u.Name = v
					case "given_name":
						u.GivenName = v
					case "family_name":
						u.FamilyName = v
					case "idp":
						u.IDP = v
					case "tenant_id":
						u.TenantID = v
					}
				case "claim":
					var name, value string
					if !d.AllArgs(&name, &value) {
						return d.ArgErr()
					}
					if u.Claims == nil {
						u.Claims = map[string]string{}
					}
					u.Claims[name] = value
				case "refresh_error":
					args := d.RemainingArgs()
					if len(args) < 1 || len(args) > 2 {
						return d.ArgErr()
					}
					switch args[0] {
					case "interaction_required", "consent_required", "login_required", "unavailable":
					default:
						return d.Errf("refresh_error: %q is not interaction_required, consent_required, login_required or unavailable", args[0])
					}
					u.RefreshError = args[0]
					if len(args) == 2 {
						if args[0] != "interaction_required" || !json.Valid([]byte(args[1])) {
							return d.Errf("refresh_error: a claims challenge (JSON) comes only with interaction_required")
						}
						u.RefreshClaims = args[1]
					}
				default:
					return d.Errf("user: unknown subdirective %q", key)
				}
			}
			e.Users = append(e.Users, u)
		case "token_lifetime", "refresh_token_lifetime", "refresh_token_window", "sso_session_lifetime", "keep_me_signed_in":
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
		case "issuer_form":
			if err := oneOf(d, &e.IssuerForm, "tenant_id", "tfp"); err != nil {
				return err
			}
		case "sso_session_timeout":
			if err := oneOf(d, &e.SSOSessionTimeout, "rolling", "absolute"); err != nil {
				return err
			}
		case "token_numbers":
			if err := oneOf(d, &e.TokenNumbers, "number", "string"); err != nil {
				return err
			}
		case "policy_claim":
			if err := oneOf(d, &e.PolicyClaim, "tfp", "acr"); err != nil {
				return err
			}
		case "group":
			g := Group{}
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.Errf("group: want <object ID> [<display name>]")
			}
			g.ObjectID = args[0]
			if len(args) == 2 {
				g.DisplayName = args[1]
			}
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				switch d.Val() {
				case "member":
					g.Members = append(g.Members, d.RemainingArgs()...)
				default:
					return d.Errf("group: unknown subdirective %q", d.Val())
				}
			}
			e.Groups = append(e.Groups, g)
		case "graph_throttle":
			var n string
			if !d.AllArgs(&n) {
				return d.ArgErr()
			}
			v, err := strconv.Atoi(n)
			if err != nil || v < 0 {
				return d.Errf("graph_throttle: %q is not a number", n)
			}
			e.GraphThrottle = v
		case "graph_delay":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			v, err := caddy.ParseDuration(s)
			if err != nil {
				return d.Errf("graph_delay: %v", err)
			}
			e.GraphDelay = caddy.Duration(v)
		case "groups_overage":
			var n string
			if !d.AllArgs(&n) {
				return d.ArgErr()
			}
			v, err := strconv.Atoi(n)
			if err != nil || v < 1 {
				return d.Errf("groups_overage: %q is not a positive number", n)
			}
			e.GroupsOverage = v
		case "admin_key":
			if !d.AllArgs(&e.AdminKey) {
				return d.ArgErr()
			}
		case "persist_keys":
			e.PersistKeys = true
			if d.NextArg() {
				return d.ArgErr()
			}
		case "allow_remote", "sid_claim", "logout_requires_id_token", "at_hash":
			flag := map[string]*bool{"allow_remote": &e.AllowRemote, "sid_claim": &e.SIDClaim, "logout_requires_id_token": &e.LogoutRequiresIDToken, "at_hash": &e.AtHash}[d.Val()]
			*flag = true
			if d.NextArg() {
				return d.ArgErr()
			}
		case "subject":
			if err := oneOf(d, &e.Subject, "object_id", "not_supported"); err != nil {
				return err
			}
		case "policy_claims":
			args := d.RemainingArgs()
			if len(args) < 2 {
				return d.Errf("policy_claims: want <policy> <claim...>")
			}
			if e.PolicyClaims == nil {
				e.PolicyClaims = map[string][]string{}
			}
			e.PolicyClaims[args[0]] = append(e.PolicyClaims[args[0]], args[1:]...)
		case "flavor":
			if !d.AllArgs(&e.Flavor) {
				return d.ArgErr()
			}
			if e.Flavor != FlavorB2C && e.Flavor != FlavorExternalID && e.Flavor != FlavorEntraID {
				return d.Errf("flavor: %q is not b2c, external_id or entra_id", e.Flavor)
			}
		case "multi_tenant":
			e.MultiTenant = true
			if d.NextArg() {
				return d.ArgErr()
			}
		case "sso_scope":
			if err := oneOf(d, &e.SSOScope, "tenant", "application"); err != nil {
				return err
			}
		default:
			return d.Errf("unknown subdirective %q%s", d.Val(), suggest.DidYouMean(d.Val(), subdirectives))
		}
	}
	return nil
}

// Interface guard
var _ caddyfile.Unmarshaler = (*Emulator)(nil)

// parseAppRole reads `app_role <value> <assignee...>`: a role of the
// registration and who has it (users' emails, client IDs).
func parseAppRole(d *caddyfile.Dispenser, roles *map[string][]string) error {
	args := d.RemainingArgs()
	if len(args) < 1 {
		return d.Errf("app_role: want <value> [<user email or client ID>...]")
	}
	if *roles == nil {
		*roles = map[string][]string{}
	}
	(*roles)[args[0]] = append((*roles)[args[0]], args[1:]...)
	return nil
}

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

// subdirectives are the names a b2c_emulator block takes, for "did you mean".
var subdirectives = []string{"group", "groups_overage", "graph_throttle", "graph_delay", "tenant", "tenant_id", "policies", "client", "api", "user", "token_lifetime", "refresh_token_lifetime", "refresh_token_window", "issuer_form", "policy_claim", "admin_key", "persist_keys", "allow_remote", "sid_claim", "logout_requires_id_token", "at_hash", "subject", "policy_claims", "flavor", "multi_tenant", "sso_scope", "managed_identity", "token_numbers", "sso_session_lifetime", "sso_session_timeout", "keep_me_signed_in"}
