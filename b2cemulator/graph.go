package b2cemulator

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Microsoft Graph, the part an app reads group memberships with: served at
// the emulator's origin under /v1.0, protected by Graph access tokens that
// the emulator issues to applications with the client-credentials grant at
// the tenant's own endpoint (on B2C not a user flow's: user flows cannot
// issue Graph tokens). Its answers have Graph's shapes: paging with
// @odata.nextLink, errors as {"error":{"code","message"}}: 401
// InvalidAuthenticationToken, 403 Authorization_RequestDenied, 429 with
// Retry-After.

const (
	graphResource = "https://graph.microsoft.com"
	graphAppID    = "00000003-0000-0000-c000-000000000000"
)

// graphReadPermissions are the application permissions that let an app read
// another user's group memberships (Graph's transitiveMemberOf page: the
// least privileged is GroupMember.Read.All).
var graphReadPermissions = []string{"GroupMember.Read.All", "Group.Read.All", "User.Read.All", "Directory.Read.All"}

// isGraphScope tells a client-credentials scope for Microsoft Graph: Graph's
// own names, or the emulator's origin, where it plays Graph.
func isGraphScope(r *http.Request, scope string) bool {
	return scope == graphResource+"/.default" || scope == graphAppID+"/.default" || scope == origin(r)+"/.default"
}

// graphToken issues an app-only token for Microsoft Graph with the
// application permissions the client was granted (graph_permission).
func (e *Emulator) graphToken(w http.ResponseWriter, r *http.Request, tenantID string, client *Client) error {
	now, life := e.state.now(), time.Duration(e.TokenLifetime)
	sp := e.servicePrincipal(client.ClientID)
	claims := object{{"aud", graphResource}, {"iss", entraIssuer(r, tenantID)}, {"iat", now.Unix()}, {"nbf", now.Unix()},
		{"exp", now.Add(life).Unix()}, {"app_displayname", client.ClientID}, {"appid", client.ClientID}, {"idtyp", "app"}, {"oid", sp}}
	if len(client.GraphPermissions) > 0 {
		claims = append(claims, member{"roles", client.GraphPermissions})
	}
	claims = append(claims, member{"sub", sp}, member{"tid", tenantID}, member{"uti", base64.RawURLEncoding.EncodeToString(randomBytes(16))}, member{"ver", "1.0"})
	at, err := e.sign(claims)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, object{{"token_type", "Bearer"}, {"expires_in", int64(life.Seconds())}, {"ext_expires_in", int64(life.Seconds())}, {"access_token", at}})
}

// graphError is Graph's error body.
func graphError(w http.ResponseWriter, status int, code, message string) error {
	return writeJSON(w, status, object{{"error", object{{"code", code}, {"message", message},
		{"innerError", object{{"date", time.Now().UTC().Format(time.RFC3339)}, {"request-id", newGUID()}, {"client-request-id", newGUID()}}}}}})
}

// graph serves /v1.0/users/{id}/transitiveMemberOf[/microsoft.graph.group]
// and /v1.0/users/{id}/getMemberObjects.
func (e *Emulator) graph(w http.ResponseWriter, r *http.Request) error {
	if d := time.Duration(e.GraphDelay); d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return nil
		}
	}
	if e.state.throttleGraph() {
		w.Header().Set("Retry-After", "1")
		return graphError(w, http.StatusTooManyRequests, "TooManyRequests", "Too many requests.")
	}
	roles, ok := e.graphCaller(r)
	if !ok {
		return graphError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
	}
	segs := strings.Split(strings.Trim(strings.TrimPrefix(r.URL.Path, "/v1.0/"), "/"), "/")
	if len(segs) < 3 || segs[0] != "users" {
		return graphError(w, http.StatusBadRequest, "BadRequest", "Resource not found for the segment '"+segs[0]+"'.")
	}
	if !slices.ContainsFunc(roles, func(r string) bool { return slices.Contains(graphReadPermissions, r) }) {
		return graphError(w, http.StatusForbidden, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
	}
	u := e.state.userByObjectIDOrEmail(segs[1])
	if u == nil {
		return graphError(w, http.StatusNotFound, "Request_ResourceNotFound", "Resource '"+segs[1]+"' does not exist or one of its queried reference-property objects are not present.")
	}
	ids := e.userGroups(u.Email)
	switch {
	case segs[2] == "getMemberObjects" && r.Method == http.MethodPost:
		return writeJSON(w, http.StatusOK, object{{"@odata.context", graphResource + "/v1.0/$metadata#Collection(Edm.String)"}, {"value", ids}})
	case segs[2] == "transitiveMemberOf" && r.Method == http.MethodGet:
		// Pages of at most 100, whatever $top asks: Graph may return fewer
		// than asked, and a client must follow @odata.nextLink.
		top, _ := strconv.Atoi(r.URL.Query().Get("$top"))
		top = min(max(top, 1), 100)
		if r.URL.Query().Get("$top") == "" {
			top = 100
		}
		skip, _ := strconv.Atoi(r.URL.Query().Get("$skiptoken"))
		skip = min(max(skip, 0), len(ids))
		end := min(skip+top, len(ids))
		var page []object
		for _, id := range ids[skip:end] {
			page = append(page, object{{"@odata.type", "#microsoft.graph.group"}, {"id", id}, {"displayName", e.groupName(id)}, {"securityEnabled", true}})
		}
		out := object{{"@odata.context", graphResource + "/v1.0/$metadata#directoryObjects"}, {"value", page}}
		if end < len(ids) {
			q := r.URL.Query()
			q.Set("$skiptoken", strconv.Itoa(end))
			out = append(out, member{"@odata.nextLink", origin(r) + r.URL.Path + "?" + q.Encode()})
		}
		return writeJSON(w, http.StatusOK, out)
	}
	return graphError(w, http.StatusBadRequest, "BadRequest", "Unsupported request.")
}

// graphCaller checks the request's Graph access token (signed here, for
// Graph, not expired) and returns its application permissions.
func (e *Emulator) graphCaller(r *http.Request) ([]string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil, false
	}
	jws, err := jose.ParseSignedCompact(strings.TrimSpace(token), []jose.SignatureAlgorithm{jose.RS256})
	if err != nil || len(jws.Signatures) != 1 {
		return nil, false
	}
	key := e.state.publicKey(jws.Signatures[0].Header.KeyID)
	if key == nil {
		return nil, false
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return nil, false
	}
	var c struct {
		Aud   string   `json:"aud"`
		Exp   int64    `json:"exp"`
		Roles []string `json:"roles"`
	}
	if json.Unmarshal(payload, &c) != nil || (c.Aud != graphResource && c.Aud != graphAppID) || e.state.now().Unix() >= c.Exp {
		return nil, false
	}
	return c.Roles, true
}

func (e *Emulator) groupName(id string) string {
	for _, g := range e.Groups {
		if g.ObjectID == id {
			return g.DisplayName
		}
	}
	return ""
}
