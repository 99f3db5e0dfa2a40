package b2cauth

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/oidcprovider"
	"github.com/caddy-b2c/caddy-b2c/b2cauth/session"
	"go.uber.org/zap"
)

// maxTokenLength bounds a bearer token; B2C's are a few kilobytes.
const maxTokenLength = 16 << 10

// bearer checks an access token. Verified tokens are cached until their
// exp, so a client that sends the same token again costs no RSA check.
func (h *Handler) bearer(r *http.Request, token string, now time.Time) (*identity, error) {
	id, err := h.verifyBearer(r, token, now)
	if err == nil && id.signedOutEverywhere(h.signouts, id.issuedMs) {
		// The user signed out everywhere after this token was issued.
		id, err = nil, errors.New("bearer token issued before the user signed out everywhere")
	}
	countBearer(err)
	return id, err
}

// verifyBearer is bearer without the counting.
func (h *Handler) verifyBearer(r *http.Request, token string, now time.Time) (*identity, error) {
	if token == "" || len(token) > maxTokenLength || strings.Count(token, ".") != 2 {
		return nil, errors.New("malformed bearer token")
	}
	if id, ok := h.bearerCache.GetToken(token, now); ok {
		return id, nil
	}
	p, _ := h.idp.provider(tokenPolicy(token))
	d, err := p.Get(r.Context())
	if err != nil {
		return nil, err
	}
	if iss, tid := tokenIssuer(token); !issuerNames(d.Meta.Issuer, iss, tid) {
		// Perhaps one of additional_issuers (a fixed issuer, or a template
		// such as Entra's v1.0 https://sts.windows.net/{tenantid}/ beside
		// a multi-tenant v2.0 one); its keys and issuer decide.
		for _, ap := range h.idp.extra {
			if ad, err := ap.Get(r.Context()); err == nil && issuerNames(ad.Meta.Issuer, iss, tid) {
				d = ad
				break
			}
		}
	}
	payload, err := h.idp.verifyAccessToken(r.Context(), d, token)
	var scopeErr *accessCheckError
	if err != nil && !errors.As(err, &scopeErr) {
		return nil, err
	}
	id, ok := h.identity(payload)
	if !ok {
		return nil, errors.New("bearer token names no user")
	}
	id.bearerToken = token
	if appOnly(id.claims) {
		id.values["type"] = "app"
	}
	if scopeErr != nil {
		return id, scopeErr
	}
	if err := h.groups.forBearer(r.Context(), id); err != nil {
		id.groupsUnknown = true // not cached: the next request asks Graph again
		return id, nil
	}
	h.bearerCache.PutToken(token, id, id.expires, now)
	return id, nil
}

// tokenIssuer peeks at an unverified token's iss and tid, to choose which
// issuer's keys verify it. The verification decides.
func tokenIssuer(token string) (iss, tid string) {
	payload, err := session.JWTPayload(token)
	if err != nil {
		return "", ""
	}
	var c struct {
		Iss any `json:"iss"`
		TID any `json:"tid"`
	}
	_ = json.Unmarshal(payload, &c)
	iss, _ = c.Iss.(string)
	tid, _ = c.TID.(string)
	return iss, tid
}

// issuerNames tells whether a metadata issuer (perhaps a {tenantid}
// template) names a token's iss, filled with the token's tid.
func issuerNames(metaIssuer, iss, tid string) bool {
	if !strings.Contains(metaIssuer, oidcprovider.TenantPlaceholder) {
		return metaIssuer == iss
	}
	return tid != "" && strings.ReplaceAll(metaIssuer, oidcprovider.TenantPlaceholder, strings.ToLower(tid)) == iss
}

// tokenPolicy peeks at an unverified token's tfp or acr, to choose which
// policy's keys and issuer verify it. The verification decides.
func tokenPolicy(token string) string {
	payload, err := session.JWTPayload(token)
	if err != nil {
		return ""
	}
	var c struct {
		TFP string `json:"tfp"`
		ACR string `json:"acr"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return ""
	}
	if c.TFP != "" {
		return c.TFP
	}
	return c.ACR
}

// bearerFailure answers a refused bearer token as RFC 6750 says: 401
// invalid_token, or 403 insufficient_scope; 503 if the provider is down.
func (h *Handler) bearerFailure(w http.ResponseWriter, r *http.Request, err error) error {
	if errors.Is(err, errSessionStore) {
		return sessionStoreDown(h.logger, w, r, err)
	}
	if errors.Is(err, oidcprovider.ErrUnavailable) {
		return unavailable(h.logger, w, r, err)
	}
	var scopeErr *accessCheckError
	if errors.As(err, &scopeErr) {
		countRequest(outcome403)
		challenge := `Bearer realm="` + realm(r) + `", error="insufficient_scope"`
		if len(h.RequireScopes) > 0 {
			challenge += `, scope="` + strings.Join(h.RequireScopes, " ") + `"`
		}
		challenge += `, error_description="the access token lacks ` + scopeErr.missing + `"`
		w.Header().Set("WWW-Authenticate", challenge)
		return fail(w, r, http.StatusForbidden, "Insufficient scope", "The access token lacks "+scopeErr.missing+".", err)
	}
	countRequest(outcome401)
	if ce := h.logger.Check(zap.DebugLevel, "bearer token refused"); ce != nil {
		ce.Write(zap.Error(err))
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm(r)+`", error="invalid_token"`)
	return fail(w, r, http.StatusUnauthorized, "Invalid token", "The access token is not valid here.", err)
}
