package oidcprovider

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// tokenClaims are the claims we check beyond what go-oidc checks.
type tokenClaims struct {
	Subject  string          `json:"sub"`
	Nonce    string          `json:"nonce"`
	IssuedAt *json.Number    `json:"iat"`
	AZP      string          `json:"azp"`
	Audience json.RawMessage `json:"aud"`
}

func (c *tokenClaims) audiences() []string { return Audiences(c.Audience) }

// checkIssuedAt requires iat, and not in the future beyond the clock skew.
func checkIssuedAt(iat *json.Number, now time.Time) error {
	if iat == nil {
		return errors.New("token has no iat")
	}
	v, err := iat.Float64()
	if err != nil {
		return errors.New("token iat is not a number")
	}
	if time.Unix(int64(v), 0).After(now.Add(ClockSkew)) {
		return errors.New("token iat is in the future")
	}
	return nil
}

// verified runs go-oidc's checks and returns the payload and the claims we
// check on top.
func verified(ctx context.Context, v *oidc.IDTokenVerifier, raw string) (*oidc.IDToken, json.RawMessage, *tokenClaims, error) {
	tok, err := v.Verify(ctx, raw)
	if err != nil {
		return nil, nil, nil, err
	}
	var payload json.RawMessage
	if err := tok.Claims(&payload); err != nil {
		return nil, nil, nil, err
	}
	var c tokenClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, nil, nil, err
	}
	return tok, payload, &c, nil
}

// Audiences reads aud, a string or an array.
func Audiences(raw json.RawMessage) []string {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}
	}
	var many []string
	_ = json.Unmarshal(raw, &many)
	return many
}

// VerifyIDToken checks an ID token: go-oidc checks the signature (only the
// provider's asymmetric algorithms), iss, aud, exp and nbf, and at_hash
// against the access token that came with it, when both are there; we add
// what it leaves to its caller: the nonce (when wantNonce is not empty),
// iat and sub present, and azp. It returns the token's payload.
func (d *Discovered) VerifyIDToken(ctx context.Context, raw, wantNonce, accessToken, clientID string, now time.Time) (json.RawMessage, error) {
	v, err := d.verifiers.forToken(raw)
	if err != nil {
		return nil, err
	}
	tok, payload, c, err := verified(ctx, v.id, raw)
	if err != nil {
		return nil, err
	}
	if tok.AccessTokenHash != "" && accessToken != "" {
		if err := tok.VerifyAccessToken(accessToken); err != nil {
			return nil, fmt.Errorf("the access token does not match the id token's at_hash: %w", err)
		}
	}
	if c.Subject == "" {
		return nil, errors.New("id token has no sub")
	}
	if err := checkIssuedAt(c.IssuedAt, now); err != nil {
		return nil, err
	}
	if wantNonce != "" && subtle.ConstantTimeCompare([]byte(c.Nonce), []byte(wantNonce)) != 1 {
		return nil, errors.New("id token nonce does not match the sign-in")
	}
	if (len(c.audiences()) > 1 || c.AZP != "") && c.AZP != clientID {
		return nil, fmt.Errorf("id token azp is not this client")
	}
	return payload, nil
}

// VerifyAccessToken checks a bearer access token: go-oidc checks the
// signature, iss, exp and nbf; we check aud against audience and iat when
// present. What the token must be and carry besides is the caller's.
func (d *Discovered) VerifyAccessToken(ctx context.Context, raw string, audience []string, now time.Time) (json.RawMessage, error) {
	v, err := d.verifiers.forToken(raw)
	if err != nil {
		return nil, err
	}
	_, payload, c, err := verified(ctx, v.access, raw)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(c.audiences(), func(a string) bool { return slices.Contains(audience, a) }) {
		return nil, errors.New("token audience is not accepted")
	}
	if c.IssuedAt != nil {
		if err := checkIssuedAt(c.IssuedAt, now); err != nil {
			return nil, err
		}
	}
	return payload, nil
}
