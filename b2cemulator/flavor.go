package b2cemulator

import (
	"crypto/sha256"
	"encoding/base64"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Flavors: besides Azure AD B2C, the emulator speaks Microsoft Entra
// External ID (B2C's successor) and Entra ID (workforce, single- or
// multi-tenant). Both are Microsoft identity platform v2.0 endpoints: no
// user flows in the URL, `/{tenant}/v2.0/.well-known/openid-configuration`,
// issuer `<origin>/{tenant ID}/v2.0` (External ID's real issuer has the
// tenant ID as its host too, `https://{tid}.ciamlogin.com/{tid}/v2.0`,
// which a local emulator cannot have), v2.0 tokens with `tid`,
// `preferred_username` and a pairwise `sub`, and AADSTS error codes.
// Internally such a tenant has one sign-in "policy", entraPolicy.
const (
	FlavorB2C        = "b2c"
	FlavorExternalID = "external_id"
	FlavorEntraID    = "entra_id"

	entraPolicy = "signin"
	// tenantTemplate is the multi-tenant metadata's issuer placeholder.
	tenantTemplate = "{tenantid}"
)

// entra tells whether the emulator speaks the Microsoft identity platform
// (External ID or Entra ID) rather than B2C.
func (e *Emulator) entra() bool { return e.Flavor != FlavorB2C }

// routeEntra maps a v2.0 endpoint path: /{tenant}/v2.0/.well-known/…,
// /{tenant}/discovery/v2.0/keys, /{tenant}/oauth2/v2.0/authorize|token|logout,
// where {tenant} is the tenant's name.onmicrosoft.com or ID, a user's tenant
// ID, or, with multi_tenant, organizations or common.
func (e *Emulator) routeEntra(segs []string) (route, bool) {
	rt := route{tenantSegment: segs[0], policy: entraPolicy}
	seg := strings.ToLower(segs[0])
	switch {
	case seg == e.Tenant+".onmicrosoft.com" || seg == e.TenantID:
		rt.tenantID = e.TenantID
	case e.MultiTenant && (seg == "organizations" || seg == "common"):
		rt.multiTenant = true
	case e.MultiTenant && e.state.hasTenant(seg):
		rt.tenantID = seg
	default:
		return rt, false
	}
	if rt.endpoint = endpoints[strings.ToLower(strings.Join(segs[1:], "/"))]; rt.endpoint == "" {
		rt.endpoint = "not_found"
	}
	return rt, true
}

// entraIssuer is a tenant's v2.0 issuer; for organizations/common metadata,
// the template.
func entraIssuer(r *http.Request, tenantID string) string {
	return origin(r) + "/" + tenantID + "/v2.0"
}

// discoveryEntra is a v2.0 metadata document, with the members and order of
// Entra ID's (see entraid-v2-openid-configuration.json).
func (e *Emulator) discoveryEntra(r *http.Request, rt route) object {
	base := origin(r) + "/" + rt.tenantSegment
	issuer := entraIssuer(r, rt.tenantID)
	if rt.multiTenant {
		issuer = entraIssuer(r, tenantTemplate)
	}
	claims := []string{"sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce", "preferred_username", "name", "tid", "ver", "at_hash", "c_hash", "email"}
	doc := object{
		{"token_endpoint", base + "/oauth2/v2.0/token"},
		{"token_endpoint_auth_methods_supported", []string{"client_secret_post", "private_key_jwt", "client_secret_basic"}},
		{"jwks_uri", base + "/discovery/v2.0/keys"},
		{"response_modes_supported", []string{"query", "fragment", "form_post"}},
		{"subject_types_supported", []string{"pairwise"}},
		{"id_token_signing_alg_values_supported", []string{"RS256"}},
		{"response_types_supported", []string{"code", "id_token", "code id_token", "id_token token"}},
		{"scopes_supported", []string{"openid", "profile", "email", "offline_access"}},
		{"issuer", issuer},
		{"request_uri_parameter_supported", false},
		{"authorization_endpoint", base + "/oauth2/v2.0/authorize"},
		{"http_logout_supported", true},
		{"frontchannel_logout_supported", true},
		{"end_session_endpoint", base + "/oauth2/v2.0/logout"},
		{"claims_supported", claims},
		{"tenant_region_scope", "WW"},
		{"cloud_instance_name", "microsoftonline.com"},
	}
	if e.Flavor == FlavorEntraID {
		// Entra ID names its cloud's Graph (External ID's metadata does
		// not): here the emulator's own host, which plays Graph.
		doc = append(doc, member{"cloud_graph_host_name", "graph.windows.net"}, member{"msgraph_host", r.Host})
	}
	return doc
}

// optionalClaims are the ID token optional claims a client may ask for
// (Microsoft's optional claims reference).
var optionalClaims = []string{"sid", "login_hint", "auth_time", "email", "xms_edov"}

// userTenant is the tenant a user belongs to.
func (e *Emulator) userTenant(u *User) string {
	if u.TenantID != "" {
		return strings.ToLower(u.TenantID)
	}
	return e.TenantID
}

// pairwiseSub is the v2.0 `sub`: the same user has a different one in
// each application.
func pairwiseSub(oid, clientID string) string {
	sum := sha256.Sum256([]byte(oid + "|" + clientID))
	return base64.RawURLEncoding.EncodeToString(sum[:])[:43]
}

// entraUserClaims are a v2.0 token's claims about the user.
func (e *Emulator) entraUserClaims(u *User, g *grant) object {
	o := object{}
	if u.Name != "" {
		o = append(o, member{"name", u.Name})
	}
	o = append(o, member{"oid", u.ObjectID}, member{"preferred_username", u.Email})
	if e.Flavor == FlavorExternalID || contains(g.scopes, "email") {
		o = append(o, member{"email", u.Email})
	}
	if u.IDP != "" {
		o = append(o, member{"idp", u.IDP})
	}
	for _, k := range slices.Sorted(maps.Keys(u.Claims)) {
		o = append(o, member{k, u.Claims[k]})
	}
	return o
}

// entraIDTokenClaims are a v2.0 ID token's claims, in Entra ID's order.
func (e *Emulator) entraIDTokenClaims(r *http.Request, g *grant, u *User, now time.Time, atHash string) object {
	o := object{
		{"aud", g.clientID},
		{"iss", entraIssuer(r, e.userTenant(u))},
		{"iat", now.Unix()},
		{"nbf", now.Unix()},
		{"exp", now.Add(time.Duration(e.TokenLifetime)).Unix()},
	}
	if atHash != "" {
		o = append(o, member{"at_hash", atHash})
	}
	if g.nonce != "" {
		o = append(o, member{"nonce", g.nonce})
	}
	asks := func(claim string) bool {
		c := e.client(g.clientID)
		return c != nil && slices.Contains(c.OptionalClaims, claim)
	}
	if len(g.acrs) > 0 {
		o = append(o, member{"acrs", g.acrs})
	}
	if asks("auth_time") {
		o = append(o, member{"auth_time", g.authTime.Unix()})
	}
	o = append(o, e.entraUserClaims(u, g)...)
	if asks("email") && !contains(g.scopes, "email") && e.Flavor != FlavorExternalID {
		o = append(o, member{"email", u.Email})
	}
	if _, set := u.Claims["xms_edov"]; !set && asks("xms_edov") && (asks("email") || contains(g.scopes, "email") || e.Flavor == FlavorExternalID) {
		o = append(o, member{"xms_edov", false}) // "requires the email claim"; a user's claim xms_edov says otherwise
	}
	if asks("login_hint") {
		// Opaque to the app; the emulator reads it back at end_session.
		o = append(o, member{"login_hint", "O." + base64.RawURLEncoding.EncodeToString([]byte(u.ObjectID+"@"+e.userTenant(u)))})
	}
	o = append(o, e.rolesAndGroups(g.clientID, u, e.userTenant(u))...)
	if (e.SIDClaim || asks("sid")) && g.sid != "" {
		o = append(o, member{"sid", g.sid})
	}
	return append(o,
		member{"sub", pairwiseSub(u.ObjectID, g.clientID)},
		member{"tid", e.userTenant(u)},
		member{"uti", base64.RawURLEncoding.EncodeToString(randomBytes(16))},
		member{"ver", "2.0"},
	)
}

// entraAccessTokenClaims are a v2.0 access token's claims.
func (e *Emulator) entraAccessTokenClaims(r *http.Request, g *grant, u *User, now time.Time, aud string, scp []string) object {
	o := object{
		{"aud", aud},
		{"iss", entraIssuer(r, e.userTenant(u))},
		{"iat", now.Unix()},
		{"nbf", now.Unix()},
		{"exp", now.Add(time.Duration(e.TokenLifetime)).Unix()},
		{"azp", g.clientID},
		{"azpacr", "1"},
	}
	o = append(o, e.entraUserClaims(u, g)...)
	o = append(o, e.rolesAndGroups(aud, u, e.userTenant(u))...)
	if len(g.acrs) > 0 {
		o = append(o, member{"acrs", g.acrs})
	}
	if len(g.capabilities) > 0 {
		o = append(o, member{"xms_cc", g.capabilities})
	}
	if len(scp) > 0 {
		o = append(o, member{"scp", strings.Join(scp, " ")})
	}
	return append(o,
		member{"sub", pairwiseSub(u.ObjectID, aud)},
		member{"tid", e.userTenant(u)},
		member{"uti", base64.RawURLEncoding.EncodeToString(randomBytes(16))},
		member{"ver", "2.0"},
	)
}

// aadsts are the Microsoft identity platform's codes for the errors the
// emulator reports with B2C's codes. Representative codes, our reading of
// the AADSTS reference; the messages stay the emulator's.
var aadsts = map[string]string{
	"AADB2C90006": "AADSTS50011",   // redirect URI mismatch
	"AADB2C90007": "AADSTS500113",  // no reply address registered
	"AADB2C90008": "AADSTS900144",  // missing client_id
	"AADB2C90010": "AADSTS900144",  // missing scope
	"AADB2C90013": "AADSTS700054",  // response_type not enabled
	"AADB2C90014": "AADSTS900144",  // response_mode
	"AADB2C90018": "AADSTS700016",  // application not found in tenant
	"AADB2C90043": "AADSTS90023",   // invalid prompt
	"AADB2C90077": "AADSTS50058",   // prompt=none without a session
	"AADB2C90079": "AADSTS7000218", // client_secret required
	"AADB2C90080": "AADSTS70008",   // grant expired
	"AADB2C90081": "AADSTS7000215", // invalid client secret
	"AADB2C90083": "AADSTS900144",  // missing parameter
	"AADB2C90086": "AADSTS70003",   // unsupported grant type
	"AADB2C90088": "AADSTS70000",   // invalid grant
	"AADB2C90091": "AADSTS65004",   // the user declined (cancel)
	"AADB2C90115": "AADSTS70011",   // invalid scope
	"AADB2C90117": "AADSTS70011",   // invalid scope
	"AADB2C90128": "AADSTS50034",   // the user account does not exist
	"AADB2C90129": "AADSTS50173",   // grant revoked (password changed)
	"AADB2C90182": "AADSTS50148",   // code_verifier does not match
	"AADB2C90183": "AADSTS501481",  // invalid code_verifier
	"AADB2C90184": "AADSTS501491",  // code_challenge_method
	"AADB2C99059": "AADSTS9002325", // PKCE required
}

// localize gives an error in the flavor's terms: B2C's as is; AADSTS codes
// for the Microsoft identity platform.
func (e *Emulator) localize(b b2cError) b2cError {
	if !e.entra() || strings.HasPrefix(b.code, "AADSTS") {
		return b
	}
	code, ok := aadsts[b.code]
	if !ok {
		code = "AADSTS50000" // "There was an error issuing a token."
	}
	b.code = code
	return b
}

// stsErrorNumber is the number in an AADSTS code, for error_codes.
func stsErrorNumber(code string) int64 {
	n, _ := strconv.ParseInt(strings.TrimPrefix(code, "AADSTS"), 10, 64)
	return n
}
