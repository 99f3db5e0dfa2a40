package b2cemulator

import (
	"encoding/json"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// The subdirectives that register something, each with a block of its
// own: clients, managed identities, APIs, users and groups.

func parseClient(e *Emulator, d *caddyfile.Dispenser) error {
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
	return nil
}

func parseManagedIdentity(e *Emulator, d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) < 1 || len(args) > 2 {
		return d.Errf("managed_identity: want <client id> [<object id>]")
	}
	m := ManagedIdentity{ClientID: args[0]}
	if len(args) == 2 {
		m.ObjectID = args[1]
	}
	e.ManagedIdentities = append(e.ManagedIdentities, m)
	return nil
}

func parseAPI(e *Emulator, d *caddyfile.Dispenser) error {
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
	return nil
}

func parseUser(e *Emulator, d *caddyfile.Dispenser) error {
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
			case "interaction_required", "invalid_grant", "consent_required", "login_required", "unavailable":
			default:
				return d.Errf("refresh_error: %q is not interaction_required, invalid_grant, consent_required, login_required or unavailable", args[0])
			}
			u.RefreshError = args[0]
			if len(args) == 2 {
				if (args[0] != "interaction_required" && args[0] != "invalid_grant") || !json.Valid([]byte(args[1])) {
					return d.Errf("refresh_error: a claims challenge (JSON) comes only with interaction_required or invalid_grant")
				}
				u.RefreshClaims = args[1]
			}
		default:
			return d.Errf("user: unknown subdirective %q", key)
		}
	}
	e.Users = append(e.Users, u)
	return nil
}

func parseGroup(e *Emulator, d *caddyfile.Dispenser) error {
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
		case "type":
			if !d.AllArgs(&g.Type) || (g.Type != "security" && g.Type != "microsoft365") {
				return d.Errf("group: type is security or microsoft365")
			}
		default:
			return d.Errf("group: unknown subdirective %q", d.Val())
		}
	}
	e.Groups = append(e.Groups, g)
	return nil
}

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
