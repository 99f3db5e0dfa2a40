package b2cemulator

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// App roles, groups and the client-credentials grant: what an API behind
// b2c_auth authorizes with.

// appRoles are the app roles of a registration (a client or an API, by
// client ID) assigned to someone: a user's email or a client ID.
func (e *Emulator) appRoles(resource, assignee string) []string {
	var defined map[string][]string
	if c := e.client(resource); c != nil {
		defined = c.AppRoles
	}
	for i := range e.APIs {
		if e.APIs[i].ClientID == resource {
			defined = e.APIs[i].AppRoles
		}
	}
	var out []string
	for _, value := range slices.Sorted(func(yield func(string) bool) {
		for v := range defined {
			if !yield(v) {
				return
			}
		}
	}) {
		if slices.ContainsFunc(defined[value], func(a string) bool { return strings.EqualFold(a, assignee) }) {
			out = append(out, value)
		}
	}
	return out
}

// userGroups are the object IDs of the groups a user is a member of.
func (e *Emulator) userGroups(email string) []string {
	var out []string
	for _, g := range e.memberships(email) {
		out = append(out, g.ObjectID)
	}
	return out
}

// memberships are the groups a user is a member of.
func (e *Emulator) memberships(email string) []Group {
	var out []Group
	for _, g := range e.Groups {
		if slices.ContainsFunc(g.Members, func(m string) bool { return strings.EqualFold(m, email) }) {
			out = append(out, g)
		}
	}
	return out
}

// rolesAndGroups are the `roles` and `groups` claims of a user's token for
// a registration, as Entra ID and External ID issue them: past
// groups_overage groups, the overage indicator instead of `groups` — a
// Microsoft Graph URL in _claim_sources ("This URL uses the Microsoft Graph
// endpoint": Microsoft's get-signed-in-users-groups-in-access-token). B2C
// emits neither.
func (e *Emulator) rolesAndGroups(resource string, u *User, tenantID string) object {
	if !e.entra() {
		return nil
	}
	var o object
	if roles := e.appRoles(resource, u.Email); len(roles) > 0 {
		o = append(o, member{"roles", roles})
	}
	groups := e.userGroups(u.Email)
	switch {
	case len(groups) > e.GroupsOverage:
		o = append(o,
			member{"_claim_names", object{{"groups", "src1"}}},
			member{"_claim_sources", object{{"src1", object{{"endpoint", graphResource + "/v1.0/users/" + u.ObjectID + "/getMemberObjects"}}}}})
	case len(groups) > 0:
		o = append(o, member{"groups", groups})
	}
	return o
}

// servicePrincipal is the object ID of a client application's service
// principal in the tenant: an app-only token's oid and sub.
func (e *Emulator) servicePrincipal(clientID string) string {
	return derivedGUID("sp:" + e.TenantID + ":" + clientID)
}

// resource finds the registration a `<resource>/.default` scope names: an
// API by its App ID URI or client ID, or a client by its ID.
func (e *Emulator) resource(scope string) (string, bool) {
	res, ok := strings.CutSuffix(scope, "/.default")
	if !ok {
		return "", false
	}
	for _, a := range e.APIs {
		if strings.EqualFold(a.AppIDURI, res) || a.ClientID == res || "api://"+a.ClientID == res {
			return a.ClientID, true
		}
	}
	if c := e.client(strings.TrimPrefix(res, "api://")); c != nil {
		return c.ClientID, true
	}
	return "", false
}

// clientCredentials is the client-credentials grant: an application asks
// for a token for itself (app-only) for `<API>/.default`. The token carries
// the app roles the API assigned to the application: in `roles` on the
// identity platform, in `scp` on B2C ("The `value` property of each app
// role definition appears in the scope, the `scp` claim").
func (e *Emulator) clientCredentials(w http.ResponseWriter, r *http.Request, rt route, client *Client, scope string) error {
	if client.Platform != "web" { // a public client has no credential to prove itself with
		return e.tokenError(w, http.StatusBadRequest, errRequest("AADB2C90079", "Clients must send a client_secret when redeeming a confidential grant."))
	}
	fields := strings.Fields(scope)
	if len(fields) == 1 && isGraphScope(r, fields[0]) {
		if !e.entra() {
			// B2C's user flows cannot issue Graph tokens: the app asks the
			// tenant's own endpoint (login.microsoftonline.com).
			return e.tokenError(w, http.StatusBadRequest, errRequest("AADB2C90117", "The scope '"+fields[0]+"' provided in the request is not supported: request Microsoft Graph tokens from the tenant's endpoint, not a user flow."))
		}
		if rt.multiTenant {
			return e.tokenError(w, http.StatusBadRequest, errRequest("AADB2C90083", "Use a tenant-specific endpoint for the client credentials flow."))
		}
		return e.graphToken(w, r, rt.tenantID, client)
	}
	if len(fields) != 1 {
		return e.tokenError(w, http.StatusBadRequest, errRequest("AADB2C90117", fmt.Sprintf("The scope '%s' provided in the request is not supported: ask for one <resource>/.default.", scope)))
	}
	aud, ok := e.resource(fields[0])
	if !ok {
		return e.tokenError(w, http.StatusBadRequest, errRequest("AADB2C90117", fmt.Sprintf("The scope '%s' provided in the request is not supported.", fields[0])))
	}
	if rt.multiTenant {
		return e.tokenError(w, http.StatusBadRequest, errRequest("AADB2C90083", "Use a tenant-specific endpoint for the client credentials flow."))
	}
	now, life := e.state.now(), time.Duration(e.TokenLifetime)
	roles, sp := e.appRoles(aud, client.ClientID), e.servicePrincipal(client.ClientID)
	var claims object
	if e.entra() {
		claims = object{{"aud", aud}, {"iss", entraIssuer(r, rt.tenantID)}, {"iat", now.Unix()}, {"nbf", now.Unix()},
			{"exp", now.Add(life).Unix()}, {"azp", client.ClientID}, {"azpacr", "1"}, {"oid", sp}}
		if len(roles) > 0 {
			claims = append(claims, member{"roles", roles})
		}
		claims = append(claims, member{"sub", sp}, member{"tid", rt.tenantID},
			member{"uti", base64.RawURLEncoding.EncodeToString(randomBytes(16))}, member{"ver", "2.0"})
	} else {
		claims = object{{"iss", e.issuer(r, rt.policy)}, {"exp", now.Add(life).Unix()}, {"nbf", now.Unix()}, {"aud", aud}, {"sub", sp}, {"azp", client.ClientID}}
		if len(roles) > 0 {
			claims = append(claims, member{"scp", strings.Join(roles, " ")})
		}
		claims = append(claims, member{"ver", "1.0"}, member{"iat", now.Unix()})
	}
	at, err := e.sign(claims)
	if err != nil {
		return err
	}
	if e.entra() {
		return writeJSON(w, http.StatusOK, object{{"token_type", "Bearer"}, {"expires_in", int64(life.Seconds())}, {"ext_expires_in", int64(life.Seconds())}, {"access_token", at}})
	}
	return writeJSON(w, http.StatusOK, object{{"access_token", at}, {"token_type", "Bearer"}, {"not_before", now.Unix()},
		{"expires_in", int64(life.Seconds())}, {"expires_on", now.Add(life).Unix()}, {"resource", aud}})
}

// tenantToken is a B2C tenant's own token endpoint, outside its user flows
// (login.microsoftonline.com/<tenant>/oauth2/v2.0/token): client
// credentials for Microsoft Graph only.
func (e *Emulator) tenantToken(w http.ResponseWriter, r *http.Request, rt route) error {
	f, status, bad := tokenForm(w, r)
	if bad != nil {
		return e.tokenError(w, status, *bad)
	}
	client := e.client(f.Get("client_id"))
	switch {
	case f.Get("grant_type") != "client_credentials" || !isGraphScope(r, f.Get("scope")):
		return e.tokenError(w, http.StatusBadRequest, errRequest("AADB2C90083", "The tenant endpoint serves only client credentials for Microsoft Graph; user flows serve the rest."))
	case client == nil:
		return e.tokenError(w, http.StatusBadRequest, b2cError{"unauthorized_client", "AADB2C90018", "The client ID '" + f.Get("client_id") + "' is not registered in the tenant."})
	}
	if bad := e.authenticateClient(r, client, f.Get("client_secret"), f.Get("client_assertion_type"), f.Get("client_assertion"), origin(r)+r.URL.Path); bad != nil {
		return e.tokenError(w, http.StatusUnauthorized, *bad)
	}
	return e.graphToken(w, r, e.TenantID, client)
}
