package b2cemulator

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// What the tokens say: the user's claims as each platform and policy puts
// them, signed with the tenant's key.

// default all of them, and only `oid` for a password reset flow.
func (e *Emulator) userClaims(u *User, policy string) object {
	all := object{{"oid", u.ObjectID}, {"emails", []string{u.Email}}}
	for _, m := range []member{{"name", u.Name}, {"given_name", u.GivenName}, {"family_name", u.FamilyName}, {"idp", u.IDP}} {
		if m.value.(string) != "" {
			all = append(all, m)
		}
	}
	names := make([]string, 0, len(u.Claims))
	for k := range u.Claims {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		all = append(all, member{k, u.Claims[k]})
	}
	wanted, set := e.policyClaims(policy)
	if !set {
		return all
	}
	if u.IDP != "" && slices.Contains(wanted, "idp_access_token") {
		// The social provider's access token, passed through as B2C's
		// "Identity Provider Access Token" claim does.
		all = append(all, member{"idp_access_token", "EAA" + hex.EncodeToString(randomBytes(24))})
	}
	var o object
	for _, m := range all {
		if slices.Contains(wanted, m.name) {
			o = append(o, m)
		}
	}
	return o
}

// policyClaims are the claims a policy is set to return, if limited.
func (e *Emulator) policyClaims(policy string) ([]string, bool) {
	for p, claims := range e.PolicyClaims {
		if strings.EqualFold(p, policy) {
			return claims, true
		}
	}
	if policyKind(policy) == "reset" {
		return []string{"oid"}, true
	}
	return nil, false
}

// subject is the `sub` claim: the object ID, or the constant of the legacy
// "Subject: Not supported" setting.
func (e *Emulator) subject(u *User) string {
	if e.Subject == "not_supported" {
		return "Not supported currently. Use oid claim."
	}
	return u.ObjectID
}

// policyMember is the claim that names the policy: tfp as user flows
// send it, or acr lower-cased as custom policies do.
func (e *Emulator) policyMember(policy string) member {
	if e.PolicyClaim == "acr" {
		return member{"acr", strings.ToLower(policy)}
	}
	return member{"tfp", policy}
}

func (e *Emulator) idTokenClaims(r *http.Request, g *grant, u *User, now time.Time, atHash string) object {
	o := object{
		{"exp", now.Add(time.Duration(e.TokenLifetime)).Unix()},
		{"nbf", now.Unix()},
		{"ver", "1.0"},
		{"iss", e.issuer(r, g.policy)},
		{"sub", e.subject(u)},
		{"aud", g.clientID},
	}
	if g.nonce != "" {
		o = append(o, member{"nonce", g.nonce})
	}
	if atHash != "" {
		o = append(o, member{"at_hash", atHash})
	}
	o = append(o, member{"iat", now.Unix()}, member{"auth_time", g.authTime.Unix()})
	if e.SIDClaim && g.sid != "" {
		o = append(o, member{"sid", g.sid})
	}
	o = append(o, e.userClaims(u, g.policy)...)
	return append(o, e.policyMember(g.policy))
}

func (e *Emulator) accessTokenClaims(r *http.Request, g *grant, u *User, now time.Time, aud string, scp []string) object {
	o := object{
		{"iss", e.issuer(r, g.policy)},
		{"exp", now.Add(time.Duration(e.TokenLifetime)).Unix()},
		{"nbf", now.Unix()},
		{"aud", aud},
	}
	o = append(o, e.userClaims(u, g.policy)...)
	o = append(o, member{"sub", e.subject(u)}, e.policyMember(g.policy))
	if g.nonce != "" {
		o = append(o, member{"nonce", g.nonce})
	}
	if len(scp) > 0 {
		o = append(o, member{"scp", strings.Join(scp, " ")})
	}
	return append(o, member{"azp", g.clientID}, member{"ver", "1.0"}, member{"iat", now.Unix()})
}

// sign makes an RS256 JWT with the current key.
func (e *Emulator) sign(claims object) (string, error) {
	k := e.state.current()
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.kid)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: k.key}, opts)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// verifyOwnToken checks that a token was signed by this tenant and returns
// its audience and expiry. It is used for id_token_hint.
func (e *Emulator) verifyOwnToken(token string) (aud string, exp time.Time, err error) {
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil || len(jws.Signatures) != 1 {
		return "", exp, errors.New("not a signed token")
	}
	key := e.state.publicKey(jws.Signatures[0].Header.KeyID)
	if key == nil {
		return "", exp, errors.New("unknown key")
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return "", exp, err
	}
	var c struct {
		Aud any   `json:"aud"`
		Exp int64 `json:"exp"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return "", exp, err
	}
	switch a := c.Aud.(type) {
	case string:
		aud = a
	case []any:
		if len(a) > 0 {
			aud, _ = a[0].(string)
		}
	}
	return aud, time.Unix(c.Exp, 0), nil
}

// tokenError writes B2C's JSON error body.
// tokenError is the token endpoint's error answer: B2C's two members, or
