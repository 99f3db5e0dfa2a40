package b2cauth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/session"
	"github.com/caddyserver/caddy/v2"
)

// identity is a signed-in user, from a session or a bearer token, with
// everything downstream handlers see computed once.
type identity struct {
	claims map[string]any
	values map[string]string // placeholder name → value
	id     string
	// userKey keys per-user state (sign-out everywhere): <tid>/<oid> where
	// there is a tenant, as Microsoft's claims validation guidance says an
	// oid alone is not unique across tenants; else the id.
	userKey string
	session *session.Session // nil for a bearer token
	expires time.Time        // when caches forget it: the token's exp, or the session's end
	// issuedMs is the token's iat (Unix ms; 0 without one), for "everywhere".
	issuedMs int64

	bearerToken string // the access token presented, for a bearer identity
	// groupsUnknown: the groups had to come from Microsoft Graph, which
	// failed; rules that need them refuse.
	groupsUnknown bool

	principalOnce sync.Once
	principal     string // X-MS-CLIENT-PRINCIPAL

	placeholdersOnce sync.Once
	placeholders     caddy.ReplacerFunc // {http.auth.user.*} and {http.auth.b2c.*}

	assertionMu sync.Mutex
	assertion   signedAssertion // the last one signed for it
}

// notSupportedSubject is the `sub` of B2C user flows set to the legacy
// "Subject: Not supported": the same for every user.
const notSupportedSubject = "Not supported currently. Use oid claim."

// idpAccessTokenClaim is the social provider's own access token, which a
// B2C user flow can pass through in its tokens: a credential, kept out of
// placeholders, headers and /.auth/me unless expose_idp_access_token.
const idpAccessTokenClaim = "idp_access_token"

// orNil is identity's result as one value: nil for no identity.
func orNil(id *identity, ok bool) *identity {
	if !ok {
		return nil
	}
	return id
}

// identity builds the identity of a checked token's payload, without the
// social provider's access token unless the configuration lets it through.
func (h *Handler) identity(payload []byte) (*identity, bool) {
	id, ok := newIdentity(payload)
	if ok && !h.ExposeIDPAccessToken {
		delete(id.claims, idpAccessTokenClaim)
		delete(id.values, idpAccessTokenClaim)
	}
	return id, ok
}

// newIdentity builds an identity from a token's payload. It refuses a
// token that names no user, or only the constant notSupportedSubject (every
// user would share one ID).
func newIdentity(payload []byte) (*identity, bool) {
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var claims map[string]any
	if dec.Decode(&claims) != nil {
		return nil, false
	}
	id := &identity{claims: claims, values: make(map[string]string, len(claims)+3)}
	for k, v := range claims {
		id.values[k] = claimString(v)
	}
	id.id = id.values["oid"]
	if id.id == "" && id.values["sub"] != notSupportedSubject {
		id.id = id.values["sub"]
	}
	if id.id == "" {
		return nil, false
	}
	id.values["id"] = id.id
	id.userKey = id.id
	if tid := strings.ToLower(id.values["tid"]); tid != "" {
		id.userKey = tid + "/" + id.id
	}
	id.values["type"] = "user" // a bearer token's may say otherwise: appOnly
	if id.values["email"] == "" {
		if first := firstString(claims["emails"]); first != "" {
			id.values["email"] = first
		}
	}
	if p := policyOf(claims); p != "" {
		id.values["policy"] = p
	}
	if iat, ok := claims["iat"].(json.Number); ok {
		if v, err := iat.Float64(); err == nil {
			id.issuedMs = int64(v * 1000)
		}
	}
	if exp, ok := claims["exp"].(json.Number); ok {
		if v, err := exp.Int64(); err == nil {
			id.expires = time.Unix(v, 0)
		}
	}
	return id, true
}

// policyOf is the B2C policy that issued a token: tfp, else a custom
// policy's acr (Entra ID's v1 acr, "1", is an authentication level, not a
// policy); "" without one.
func policyOf(claims map[string]any) string {
	if p, ok := claims["tfp"].(string); ok && p != "" {
		return p
	}
	if p, ok := claims["acr"].(string); ok && strings.HasPrefix(strings.ToLower(p), "b2c_1a_") {
		return p
	}
	return ""
}

// signedOutEverywhere tells whether the user signed out everywhere after
// issuedMs: by their key (<tid>/<oid>), or by their id alone, as an
// operator names them (caddy b2c revoke --user <oid>).
func (id *identity) signedOutEverywhere(st interface{ UserRevoked(string, int64) bool }, issuedMs int64) bool {
	return st.UserRevoked(id.userKey, issuedMs) || (id.userKey != id.id && st.UserRevoked(id.id, issuedMs))
}

// appOnly tells whether an access token's caller is an application on its
// own (client credentials), not a user. Entra ID says so in
// its optional idtyp claim; without it, an application permission (roles)
// with no delegated one (scp) is app-only, as Microsoft's claims
// validation guidance reads it. Azure AD B2C's app-only tokens carry their
// permissions in scp but none of the claims its user flows put in every
// user's token (oid, nonce, tfp or acr), only sub (the calling app's
// service principal), azp and scp.
func appOnly(claims map[string]any) bool {
	if t, ok := claims["idtyp"].(string); ok {
		return t == "app"
	}
	_, scp := claims["scp"]
	if _, roles := claims["roles"]; roles && !scp {
		return true
	}
	if _, azp := claims["azp"]; !azp || !scp {
		return false
	}
	for _, c := range []string{"oid", "nonce", "tfp", "acr", "tid", "name", "emails", "email", "preferred_username"} {
		if _, ok := claims[c]; ok {
			return false
		}
	}
	return true
}

// claimString is a claim as a placeholder shows it: arrays joined by commas.
func claimString(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case json.Number:
		return t.String()
	case bool:
		return strconv.FormatBool(t)
	case nil:
		return ""
	case []any:
		parts := make([]string, 0, len(t))
		for _, e := range t {
			parts = append(parts, claimString(e))
		}
		return strings.Join(parts, ",")
	default:
		b, _ := json.Marshal(t)
		return string(b)
	}
}

// claimValues are a claim's values: one for a scalar, each element of an array.
func claimValues(v any) []string {
	if arr, ok := v.([]any); ok {
		out := make([]string, 0, len(arr))
		for _, e := range arr {
			out = append(out, claimString(e))
		}
		return out
	}
	if v == nil {
		return nil
	}
	return []string{claimString(v)}
}

func firstString(v any) string {
	if vals := claimValues(v); len(vals) > 0 {
		return vals[0]
	}
	return ""
}

// placeholderPrefix is the namespace of the user's placeholders.
const placeholderPrefix = "http.auth.user."

// setPlaceholders makes {http.auth.user.*} answer from the identity (empty
// for a claim the token lacks), and
// {http.auth.b2c.*} from its tokens.
func (id *identity) setPlaceholders(repl *caddy.Replacer) {
	// An identity serves many requests (it is cached): its function, and
	// its values as the replacer takes them (a string in an interface is
	// an allocation), are made once.
	id.placeholdersOnce.Do(func() {
		values := make(map[string]any, len(id.values))
		for k, v := range id.values {
			values[k] = v
		}
		id.placeholders = func(key string) (any, bool) {
			if name, ok := strings.CutPrefix(key, placeholderPrefix); ok {
				if v, ok := values[name]; ok {
					return v, true
				}
				// A claim the token lacks is empty, never the placeholder's
				// literal text.
				return "", true
			}
			if name, ok := strings.CutPrefix(key, tokenPlaceholderPrefix); ok {
				return id.token(name)
			}
			return nil, false
		}
	})
	repl.Map(id.placeholders)
}

// name is the user's human-readable name for X-MS-CLIENT-PRINCIPAL-NAME:
// the email, else the display name, else the ID.
func (id *identity) name() string {
	for _, k := range []string{"email", "preferred_username", "name"} {
		if v := id.values[k]; v != "" {
			return v
		}
	}
	return id.id
}

// App Service's claim types for the principal and /.auth/me.
const (
	claimTypeOID      = "http://schemas.microsoft.com/identity/claims/objectidentifier"
	claimTypeNameID   = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier"
	claimTypeName     = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
	claimTypeRole     = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
	easyAuthProvider  = "aad"
	headerPrincipal   = "X-Ms-Client-Principal"
	headerTokenPrefix = "X-Ms-Token-"
)

// typVal is a claim in App Service's shape.
type typVal struct {
	Typ string `json:"typ"`
	Val string `json:"val"`
}

// userClaims lists the claims as App Service does: oid and sub under their
// schema URIs, every value a string, arrays one entry per element.
func (id *identity) userClaims() []typVal {
	names := make([]string, 0, len(id.claims))
	for k := range id.claims {
		names = append(names, k)
	}
	sort.Strings(names)
	out := make([]typVal, 0, len(names))
	for _, k := range names {
		typ := k
		switch k {
		case "oid":
			typ = claimTypeOID
		case "sub":
			typ = claimTypeNameID
		}
		for _, v := range claimValues(id.claims[k]) {
			out = append(out, typVal{Typ: typ, Val: v})
		}
	}
	return out
}

// clientPrincipal is the X-MS-CLIENT-PRINCIPAL value: standard base64 of
// the JSON App Service sends.
func (id *identity) clientPrincipal() string {
	id.principalOnce.Do(func() {
		data, _ := json.Marshal(struct {
			AuthTyp string   `json:"auth_typ"`
			Claims  []typVal `json:"claims"`
			NameTyp string   `json:"name_typ"`
			RoleTyp string   `json:"role_typ"`
		}{easyAuthProvider, id.userClaims(), claimTypeName, claimTypeRole})
		id.principal = base64.StdEncoding.EncodeToString(data)
	})
	return id.principal
}

// setEasyAuthHeaders adds App Service's identity headers to the request.
func (id *identity) setEasyAuthHeaders(h http.Header) {
	h.Set(headerPrincipal, id.clientPrincipal())
	h.Set(headerPrincipal+"-Id", id.id)
	h.Set(headerPrincipal+"-Name", id.name())
	h.Set(headerPrincipal+"-Idp", easyAuthProvider)
}

// stripIdentityHeaders removes every client-sent X-MS-CLIENT-PRINCIPAL* and
// X-MS-TOKEN-* header: only this handler may set them. A name with
// underscores or dots for dashes goes too: CGI and FastCGI (php_fastcgi)
// give an app X_MS_CLIENT_PRINCIPAL_ID and X-MS-CLIENT-PRINCIPAL-ID as the
// same HTTP_X_MS_CLIENT_PRINCIPAL_ID, so either could pass for the other
// (Caddy drops such names unless a server's expected_underscore_headers or
// expected_dot_headers lets them in).
func stripIdentityHeaders(h http.Header) {
	for k := range h { // any spelling: a map set by hand may hold non-canonical keys
		if hasCGIPrefix(k, headerPrincipal) || hasCGIPrefix(k, headerTokenPrefix) {
			delete(h, k)
		}
	}
}

// stripHeader removes every copy of a header: any spelling, and with
// underscores or dots for dashes (see stripIdentityHeaders).
func stripHeader(h http.Header, name string) {
	for k := range h {
		if sameCGIName(k, name) {
			delete(h, k)
		}
	}
}

// sameCGIName tells whether two header names are one to a CGI app.
func sameCGIName(a, b string) bool {
	return len(a) == len(b) && hasCGIPrefix(a, b)
}

// hasCGIPrefix tells whether a header name starts with prefix as CGI and
// PHP read names: ASCII case ignored, an underscore or a dot the same as
// a dash. It does not allocate.
func hasCGIPrefix(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := range len(prefix) {
		if cgiByte(s[i]) != cgiByte(prefix[i]) {
			return false
		}
	}
	return true
}

// cgiByte is a header name's byte as CGI folds it: upper case, '-' for
// '_' and '.'.
func cgiByte(c byte) byte {
	switch {
	case c == '_' || c == '.':
		return '-'
	case 'a' <= c && c <= 'z':
		return c - ('a' - 'A')
	}
	return c
}

// me is the /.auth/me body: App Service's array of one provider object.
func (id *identity) me() []map[string]any {
	entry := map[string]any{
		"provider_name": easyAuthProvider,
		"user_id":       id.name(),
		"user_claims":   id.userClaims(),
	}
	if s := id.session; s != nil {
		if s.IDToken != "" {
			entry["id_token"] = s.IDToken
		}
		if s.AccessToken != "" {
			entry["access_token"] = s.AccessToken
			entry["expires_on"] = time.Unix(s.AccessExpiry, 0).UTC().Format("2006-01-02T15:04:05.0000000Z")
		}
	}
	return []map[string]any{entry}
}
