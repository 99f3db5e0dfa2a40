package oidcprovider

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/session"
	"github.com/caddy-b2c/caddy-b2c/internal/guid"
	"github.com/coreos/go-oidc/v3/oidc"
)

// A multi-tenant Entra ID issuer (login.microsoftonline.com/organizations
// or /common) announces the issuer as a template, with {tenantid} where
// each token's own tenant goes. A token is then checked, by go-oidc as
// always, against the template filled with the token's `tid` — the way
// Microsoft.Identity.Web validates issuers — and only tokens of the
// tenants the configuration admits (`tenants`) are accepted.
const TenantPlaceholder = "{tenantid}"

// TenantError is a token of a tenant the configuration does not admit.
type TenantError struct{ tid string }

func (e *TenantError) Error() string {
	if e.tid == "" {
		return "token names no tenant (tid)"
	}
	return "tenant " + e.tid + " is not admitted (tenants)"
}

// verifierPair checks ID tokens (aud = client ID) and access tokens (aud
// left to the caller) of one issuer.
type verifierPair struct {
	id, access *oidc.IDTokenVerifier
}

// issuerVerifiers gives the verifiers for a token: the provider's own, or,
// for a template issuer, those of the token's tenant, made on first use.
type issuerVerifiers struct {
	template string   // "" for a fixed issuer
	tenants  []string // admitted tenant IDs; "*" admits any
	fixed    *verifierPair
	build    func(issuer string) *verifierPair

	mu       sync.Mutex
	byTenant map[string]*verifierPair
}

// maxTenantVerifiers bounds the per-tenant verifiers kept with `tenants *`.
const maxTenantVerifiers = 1024

func (v *issuerVerifiers) forToken(raw string) (*verifierPair, error) {
	if v.template == "" {
		return v.fixed, nil
	}
	payload, err := session.JWTPayload(raw)
	if err != nil {
		return nil, fmt.Errorf("malformed jwt")
	}
	var c struct {
		TID any `json:"tid"`
	}
	_ = json.Unmarshal(payload, &c)
	tid, _ := c.TID.(string)
	tid = strings.ToLower(tid)
	if !guid.Valid(tid) {
		return nil, &TenantError{}
	}
	if !tenantAdmitted(v.tenants, tid) {
		return nil, &TenantError{tid: tid}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if p, ok := v.byTenant[tid]; ok {
		return p, nil
	}
	p := v.build(strings.ReplaceAll(v.template, TenantPlaceholder, tid))
	if len(v.byTenant) < maxTenantVerifiers {
		v.byTenant[tid] = p
	}
	return p, nil
}

func tenantAdmitted(tenants []string, tid string) bool {
	for _, t := range tenants {
		if t == "*" || strings.EqualFold(t, tid) {
			return true
		}
	}
	return false
}

// multiTenantIssuer tells whether an issuer URL is Entra ID's multi-tenant
// endpoint (…/organizations/v2.0 or …/common/v2.0), whose metadata has a
// template issuer.
func MultiTenantIssuer(issuer string) bool {
	u, err := url.Parse(issuer)
	if err != nil {
		return false
	}
	first, _, _ := strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	return strings.EqualFold(first, "organizations") || strings.EqualFold(first, "common")
}
