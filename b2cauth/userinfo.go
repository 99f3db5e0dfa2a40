package b2cauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/oidcprovider"
	"go.uber.org/zap"
)

// Some providers (zitadel, many generic OPs) put the profile and email in
// the UserInfo response, not in the ID token. When the scopes asked for
// promise claims the ID token lacks, they are fetched once at sign-in (and
// at refresh) with the access token, checked to name the same `sub`, and
// kept in the session.

// Entra ID and External ID are the exception: "The information in an ID
// token is a superset of the information available on UserInfo endpoint"
// (learn.microsoft.com/entra/identity-platform/userinfo), so a claim their
// ID token lacks is not in UserInfo either, and asking costs a round trip at
// every sign-in and renewal for nothing. (B2C custom policies' UserInfo
// returns what its technical profile lists, which may be more.)

// promisedClaims are the claims a scope promises: name for profile, email
// for email.
var promisedClaims = map[string]string{"profile": "name", "email": "email"}

// needsUserInfo tells whether the ID token lacks a claim the scopes promise.
func (i *idp) needsUserInfo(d *oidcprovider.Discovered, tr *oidcprovider.TokenResponse, payload []byte) bool {
	if d.Meta.UserInfoEndpoint == "" || tr.AccessToken == "" || i.entraPlatform(d) {
		return false
	}
	var claims map[string]json.RawMessage
	if json.Unmarshal(payload, &claims) != nil {
		return false
	}
	for scope, claim := range promisedClaims {
		if _, has := claims[claim]; !has && slices.Contains(i.scopes, scope) {
			return true
		}
	}
	return false
}

// entraPlatform tells whether the provider is Entra ID or External ID: as
// configured, or by its metadata, which only Entra's gives a
// cloud_instance_name (B2C's does not; a custom domain hides the host).
func (i *idp) entraPlatform(d *oidcprovider.Discovered) bool {
	return i.platform.entra || d.Meta.CloudInstanceName != ""
}

// userInfo is the UserInfo claims to keep in a new session, or nil when
// none are needed or they cannot be had (the sign-in goes on without them).
func (i *idp) userInfo(ctx context.Context, d *oidcprovider.Discovered, tr *oidcprovider.TokenResponse, payload []byte) map[string]any {
	if !i.needsUserInfo(d, tr, payload) {
		return nil
	}
	extra, err := i.fetchUserInfo(ctx, d, tr.AccessToken, payload)
	if err != nil {
		i.logger.Warn("userinfo claims not used", zap.Error(err))
		return nil
	}
	return extra
}

// fetchUserInfo gets the UserInfo claims the ID token lacks. Their sub must
// be the ID token's (OpenID Connect Core 5.3.2); no claim of the ID token
// is replaced.
func (i *idp) fetchUserInfo(ctx context.Context, d *oidcprovider.Discovered, accessToken string, payload []byte) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.Meta.UserInfoEndpoint, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := i.client.Do(req)
	countFetch("userinfo", start, err)
	if err != nil {
		return nil, fmt.Errorf("%w: userinfo: %v", oidcprovider.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("userinfo: HTTP %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, err
	}
	var info, idClaims map[string]any
	if err := json.Unmarshal(body, &info); err != nil {
		return nil, errors.New("userinfo: not a JSON object (signed or encrypted UserInfo is not supported)")
	}
	_ = json.Unmarshal(payload, &idClaims)
	if sub, _ := info["sub"].(string); sub == "" || sub != idClaims["sub"] {
		return nil, errors.New("userinfo: sub is not the ID token's")
	}
	extra := map[string]any{}
	for k, v := range info {
		if _, has := idClaims[k]; !has {
			extra[k] = v
		}
	}
	return extra, nil
}

// withUserInfo is an ID token payload with the session's UserInfo claims
// added (never replacing the token's own).
func withUserInfo(payload []byte, extra map[string]any) []byte {
	if len(extra) == 0 {
		return payload
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var claims map[string]any
	if dec.Decode(&claims) != nil {
		return payload
	}
	for k, v := range extra {
		if _, has := claims[k]; !has {
			claims[k] = v
		}
	}
	out, err := json.Marshal(claims)
	if err != nil {
		return payload
	}
	return out
}
