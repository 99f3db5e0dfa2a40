package b2cauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/credentials"
	"github.com/caddy-b2c/caddy-b2c/b2cauth/oidcprovider"
	"go.uber.org/zap"
)

// idp is the identity provider as the handler speaks to it: the providers
// of its policies (discovery, keys, verifiers) and of additional issuers,
// the token endpoint with the app's credential, and UserInfo.
type idp struct {
	providers  map[string]*oidcprovider.Provider // by policy; "" in issuer mode
	extra      []*oidcprovider.Provider          // additional_issuers, discovered lazily
	policy     string                            // the sign-in policy
	clientID   string
	credential credentials.Credential // nil for a public client
	audience   []string               // accepted aud of bearer access tokens
	scopes     []string
	platform   platform
	client     *http.Client
	accessOnly func(*bearerClaims) error // an access token, not an ID token
	permits    func(*bearerClaims) error // require_scopes, require_roles
	now        func() time.Time
	logger     *zap.Logger

	// newProvider makes a provider for another B2C policy of the tenant
	// (nil elsewhere): a flow or session sealed by another b2c_auth block
	// of the same app may name one this block was not configured with.
	newProvider func(policy string) *oidcprovider.Provider
	othersMu    sync.Mutex
	others      map[string]*oidcprovider.Provider
}

// newIDP is the provider side of a provisioned handler: a provider per
// policy (one in issuer mode), the additional issuers, and the checks of
// bearer tokens.
func (h *Handler) newIDP(credential credentials.Credential) *idp {
	rules := accessRules{b2c: h.platform.b2c, clientID: h.ClientID, scopes: h.RequireScopes, roles: h.RequireRoles}
	i := &idp{providers: map[string]*oidcprovider.Provider{}, policy: h.Policy, clientID: h.ClientID, credential: credential, audience: h.Audience,
		scopes: h.Scopes, platform: h.platform, client: h.httpClient, accessOnly: rules.accessTokenOnly, permits: rules.permitsAccess,
		now: func() time.Time { return h.now() }, logger: h.logger}
	for _, p := range h.policies() {
		i.providers[strings.ToLower(p)] = &oidcprovider.Provider{MetadataURL: h.metadataURL(p), ClientID: h.ClientID, Tenants: h.Tenants, HTTP: h.httpClient, Now: func() time.Time { return h.now() }, Observe: countFetch}
	}
	for _, a := range h.AdditionalIssuers {
		p := &oidcprovider.Provider{MetadataURL: a.Metadata, ClientID: h.ClientID, Tenants: h.Tenants, HTTP: h.httpClient, Now: func() time.Time { return h.now() }, Observe: countFetch}
		if a.Metadata == "" {
			p.Static = &oidcprovider.Metadata{Issuer: a.Issuer, JWKSURI: a.JWKSURI}
		}
		i.extra = append(i.extra, p)
	}
	if h.platform.b2c {
		i.newProvider = func(policy string) *oidcprovider.Provider {
			return &oidcprovider.Provider{MetadataURL: h.metadataURL(policy), ClientID: h.ClientID, HTTP: h.httpClient, Now: func() time.Time { return h.now() }, Observe: countFetch}
		}
	}
	return i
}

// discoverAtStart fetches the sign-in policy's metadata once Caddy runs, so
// that a wrong tenant, authority or policy is in the log at start (and the
// first user does not wait for it). Provision never touches the network.
func (i *idp) discoverAtStart(ctx context.Context) {
	p, policy := i.provider(i.policy)
	if _, err := p.Get(ctx); err != nil && ctx.Err() == nil {
		i.logger.Error("identity provider metadata cannot be fetched; sign-ins fail until it can", zap.String("metadata", p.MetadataURL), zap.String("policy", policy), zap.Error(err))
	}
}

// verifyIDToken checks an ID token of this client (oidcprovider's
// VerifyIDToken), on the handler's clock.
func (i *idp) verifyIDToken(ctx context.Context, d *oidcprovider.Discovered, raw, wantNonce, accessToken string) (json.RawMessage, error) {
	return d.VerifyIDToken(ctx, raw, wantNonce, accessToken, i.clientID, i.now())
}

// verifyAccessToken checks a bearer access token: oidcprovider's checks
// (signature, iss, exp, nbf, aud against audience, iat), then that it is
// an access token at all (accessOnly), and that it carries what
// require_scopes or require_roles ask (permits).
func (i *idp) verifyAccessToken(ctx context.Context, d *oidcprovider.Discovered, raw string) (json.RawMessage, error) {
	payload, err := d.VerifyAccessToken(ctx, raw, i.audience, i.now())
	if err != nil {
		return nil, err
	}
	var ac bearerClaims
	if err := json.Unmarshal(payload, &ac); err != nil {
		return nil, err
	}
	if err := i.accessOnly(&ac); err != nil {
		return nil, err
	}
	if err := i.permits(&ac); err != nil {
		return payload, err
	}
	return payload, nil
}

// redeem posts a grant to the token endpoint with the app's credential.
func (i *idp) redeem(ctx context.Context, d *oidcprovider.Discovered, form url.Values) (*oidcprovider.TokenResponse, error) {
	return d.Redeem(ctx, i.credential, form)
}
