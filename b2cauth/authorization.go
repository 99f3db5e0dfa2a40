package b2cauth

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/oidcprovider"
)

// Authorization as Microsoft's platforms define it: a bearer credential is
// an access token, never an ID token, and it opens an API with the
// permissions it carries — delegated ones in `scp`, application ones in
// `roles` (Entra ID, External ID), or both in `scp` (Azure AD B2C). The
// facts and sources are in testdata/fixtures/authorization.md.

// bearerClaims are the claims that tell an access token from an ID token
// and carry its permissions.
type bearerClaims struct {
	Audience json.RawMessage `json:"aud"`
	AZP      string          `json:"azp"`   // v2.0 and B2C access tokens: the client it was issued to
	AppID    string          `json:"appid"` // v1.0 access tokens: the same
	TID      string          `json:"tid"`   // the Microsoft identity platform's tokens
	Nonce    *string         `json:"nonce"`
	AuthTime json.RawMessage `json:"auth_time"`
	AtHash   *string         `json:"at_hash"`
	CHash    *string         `json:"c_hash"`
	Scp      string          `json:"scp"`
	Scope    string          `json:"scope"` // RFC 9068 JWT access tokens of other providers
	Roles    json.RawMessage `json:"roles"`
}

func (c *bearerClaims) scopes() []string {
	if c.Scp != "" {
		return strings.Fields(c.Scp)
	}
	return strings.Fields(c.Scope)
}

func (c *bearerClaims) roles() []string {
	var many []string
	if json.Unmarshal(c.Roles, &many) == nil {
		return many
	}
	var one string
	if json.Unmarshal(c.Roles, &one) == nil && one != "" {
		return []string{one}
	}
	return nil
}

// errNotAccessToken is a token that verifies but is not an access token.
var errNotAccessToken = errors.New("not an access token")

// accessTokenOnly refuses what is not an access token:
//
//   - at_hash or c_hash: only ID tokens bind other artifacts (OpenID
//     Connect Core 3.1.3.6, 3.3.2.11).
//   - Azure AD B2C puts the authorize request's nonce in its access tokens
//     too, but auth_time only in its ID tokens, and azp only in its access
//     tokens: with B2C (tenant, authority), auth_time refuses, and azp is
//     required.
//   - Everywhere else, nonce refuses: ID tokens carry it whenever the
//     sign-in sent one (MSAL and this handler always do), and the
//     identity platform's access tokens never do. Its tokens (those with
//     a tid) must also name their client: azp (v2.0) or appid (v1.0), which
//     its ID tokens never carry.
//   - A permission is required: scp or roles (Microsoft.Identity.Web's
//     IDW10201), or an RFC 9068 scope. B2C's access token for the app's own
//     client ID, asked for with the client ID as a scope, carries none:
//     B2C documents it as "an access token that can be used against your
//     own service or web API, represented by the same client ID", so it is
//     accepted when its aud and azp are both this client_id.
func (a accessRules) accessTokenOnly(c *bearerClaims) error {
	if c.AtHash != nil || c.CHash != nil {
		return errNotAccessToken
	}
	if a.b2c {
		if len(c.AuthTime) > 0 || c.AZP == "" {
			return errNotAccessToken
		}
	} else {
		if c.Nonce != nil {
			return errNotAccessToken
		}
		if c.TID != "" && c.AZP == "" && c.AppID == "" {
			return errNotAccessToken
		}
	}
	if len(c.scopes()) > 0 || len(c.roles()) > 0 {
		return nil
	}
	if a.b2c && c.AZP == a.clientID && slices.Equal(oidcprovider.Audiences(c.Audience), []string{a.clientID}) {
		return nil // the client's own access token
	}
	return errors.New("access token carries neither scp nor roles")
}

// accessRules are what a bearer access token must be and carry: an access
// token (not an ID token) of this platform, with require_scopes or
// require_roles.
type accessRules struct {
	b2c           bool
	clientID      string
	scopes, roles []string // require_scopes, require_roles
}

// accessCheckError is a valid access token that lacks a permission the
// API requires: what is missing, for WWW-Authenticate.
type accessCheckError struct{ missing string }

func (e *accessCheckError) Error() string { return "token lacks " + e.missing }

// permitsAccess checks require_scopes (every one in scp) and require_roles
// (every one in roles): satisfying either list suffices. B2C carries an
// app-only caller's application permissions in scp, so require_scopes is
// what matches them there.
func (a accessRules) permitsAccess(c *bearerClaims) error {
	if len(a.scopes) == 0 && len(a.roles) == 0 {
		return nil
	}
	missingScopes := missing(a.scopes, c.scopes())
	missingRoles := missing(a.roles, c.roles())
	if (len(a.scopes) > 0 && len(missingScopes) == 0) || (len(a.roles) > 0 && len(missingRoles) == 0) {
		return nil
	}
	var parts []string
	if len(a.scopes) > 0 {
		parts = append(parts, "scope "+strings.Join(missingScopes, " "))
	}
	if len(a.roles) > 0 {
		parts = append(parts, "role "+strings.Join(missingRoles, " "))
	}
	return &accessCheckError{missing: strings.Join(parts, " or ")}
}

// missing lists what of want have lacks.
func missing(want, have []string) []string {
	var out []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			out = append(out, w)
		}
	}
	return out
}
