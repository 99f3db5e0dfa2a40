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
// another user's group memberships (Graph's getMemberGroups page asks for
// User.Read.All and GroupMember.Read.All; the emulator takes any one).
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

// graph serves a user's memberships: POST getMemberGroups (with
// securityEnabledOnly), checkMemberGroups (at most 20 IDs) and
// getMemberObjects, and GET transitiveMemberOf, paged. An OData cast
// (transitiveMemberOf/microsoft.graph.group) is an advanced query: refused
// without ConsistencyLevel: eventual and $count=true, and always in the B2C
// flavor ("advanced query capabilities are currently not available for
// Azure AD B2C tenants"). See testdata/fixtures/graph.md.
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
	groups := e.memberships(u.Email)
	switch {
	case len(segs) == 3 && r.Method == http.MethodPost && (segs[2] == "getMemberGroups" || segs[2] == "getMemberObjects"):
		var body struct {
			SecurityEnabledOnly *bool `json:"securityEnabledOnly"`
		}
		if json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&body) != nil || body.SecurityEnabledOnly == nil {
			return graphError(w, http.StatusBadRequest, "Request_BadRequest", "The parameter 'securityEnabledOnly' in the request payload is not a valid parameter for the operation '"+segs[2]+"'.")
		}
		var ids []string
		for _, g := range groups {
			if !*body.SecurityEnabledOnly || g.security() {
				ids = append(ids, g.ObjectID)
			}
		}
		if len(ids) > maxMemberGroups {
			return graphError(w, http.StatusBadRequest, "Directory_ResultSizeLimitExceeded", "Request Size Limit Exceeded.")
		}
		return writeJSON(w, http.StatusOK, object{{"@odata.context", graphResource + "/v1.0/$metadata#Collection(Edm.String)"}, {"value", orEmpty(ids)}})
	case len(segs) == 3 && r.Method == http.MethodPost && segs[2] == "checkMemberGroups":
		var body struct {
			GroupIDs []string `json:"groupIds"`
		}
		if json.NewDecoder(http.MaxBytesReader(w, r.Body, 8192)).Decode(&body) != nil || len(body.GroupIDs) == 0 || len(body.GroupIDs) > 20 {
			return graphError(w, http.StatusBadRequest, "Request_BadRequest", "Invalid 'groupIds': between 1 and 20 group IDs.")
		}
		var ids []string
		for _, id := range body.GroupIDs {
			if slices.ContainsFunc(groups, func(g Group) bool { return strings.EqualFold(g.ObjectID, id) }) {
				ids = append(ids, id)
			}
		}
		return writeJSON(w, http.StatusOK, object{{"@odata.context", graphResource + "/v1.0/$metadata#Collection(Edm.String)"}, {"value", orEmpty(ids)}})
	case segs[2] == "transitiveMemberOf" && r.Method == http.MethodGet && (len(segs) == 3 || (len(segs) == 4 && segs[3] == "microsoft.graph.group")):
		if len(segs) == 4 && (!e.entra() || r.Header.Get("ConsistencyLevel") != "eventual" || r.URL.Query().Get("$count") != "true") {
			return graphError(w, http.StatusBadRequest, "Request_UnsupportedQuery", "Unsupported Query.")
		}
		return e.transitiveMemberOf(w, r, groups)
	}
	return graphError(w, http.StatusBadRequest, "BadRequest", "Unsupported request.")
}

// maxMemberGroups is the most IDs getMemberGroups answers.
const maxMemberGroups = 11000

// transitiveMemberOf answers a page of a user's memberships: at most 100,
// whatever $top asks (Graph may return fewer than asked, and a client must
// follow @odata.nextLink).
func (e *Emulator) transitiveMemberOf(w http.ResponseWriter, r *http.Request, groups []Group) error {
	top, _ := strconv.Atoi(r.URL.Query().Get("$top"))
	top = min(max(top, 1), 100)
	if r.URL.Query().Get("$top") == "" {
		top = 100
	}
	skip, _ := strconv.Atoi(r.URL.Query().Get("$skiptoken"))
	skip = min(max(skip, 0), len(groups))
	end := min(skip+top, len(groups))
	page := []object{}
	for _, g := range groups[skip:end] {
		kinds := []string{}
		if !g.security() {
			kinds = []string{"Unified"}
		}
		page = append(page, object{{"@odata.type", "#microsoft.graph.group"}, {"id", g.ObjectID}, {"displayName", g.DisplayName},
			{"groupTypes", kinds}, {"mailEnabled", !g.security()}, {"securityEnabled", g.security()}})
	}
	out := object{{"@odata.context", graphResource + "/v1.0/$metadata#directoryObjects"}, {"value", page}}
	if end < len(groups) {
		q := r.URL.Query()
		q.Set("$skiptoken", strconv.Itoa(end))
		out = append(out, member{"@odata.nextLink", origin(r) + r.URL.Path + "?" + q.Encode()})
	}
	return writeJSON(w, http.StatusOK, out)
}

// security tells a security group (not a Microsoft 365 group).
func (g Group) security() bool { return g.Type != "microsoft365" }

func orEmpty(ids []string) []string {
	if ids == nil {
		return []string{}
	}
	return ids
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
