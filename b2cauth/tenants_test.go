package b2cauth

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/signouts"
)

const (
	tenantA = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	tenantB = "9188040d-6c67-4c5b-b112-36a304b66dad"
)

// multiTenant is a handler on a multi-tenant Entra ID issuer
// (organizations) whose metadata issuer is the {tenantid} template.
func multiTenant(t *testing.T, tenants ...string) (*Handler, *hostile, signer) {
	return multiTenantAt(t, "/organizations/v2.0", tenants...)
}

func multiTenantAt(t *testing.T, path string, tenants ...string) (*Handler, *hostile, signer) {
	p := newHostile(t)
	s := newSigner(t, "entra")
	p.set(func(p *hostile) {
		p.keys = append(p.keys, s.jwk())
		p.issuer = "https://login.microsoftonline.com/{tenantid}/v2.0"
	})
	h := newTestHandler(t, p, func(h *Handler) {
		h.Authority, h.Policy, h.PasswordResetPolicy = "", "", ""
		h.Issuer, h.Tenants = p.srv.URL+path, tenants
	})
	return h, p, s
}

// entraSignIn signs in with an ID token of the given tid and iss and returns
// the callback's status and body.
func entraSignIn(t *testing.T, h *Handler, p *hostile, s signer, tid, iss string) (int, string) {
	state, nonce, fc := pendingFlow(t, h, "/")
	claims := goodClaims(p, nonce)
	claims["iss"], claims["ver"] = iss, "2.0"
	delete(claims, "tfp")
	if tid != "" {
		claims["tid"] = tid
	}
	redeemWith(p, s.sign(t, claims))
	res := serve(h, callbackRequest(state, fc, url.Values{"code": {"c"}}))
	return res.Code, res.Body.String()
}

func issuerOf(tid string) string { return "https://login.microsoftonline.com/" + tid + "/v2.0" }

func TestMultiTenantIssuer(t *testing.T) {
	h, p, s := multiTenant(t, tenantA)
	if code, body := entraSignIn(t, h, p, s, tenantA, issuerOf(tenantA)); code != http.StatusFound {
		t.Fatalf("a user of an admitted tenant: %d %s", code, body)
	}
	// Another tenant's user: refused with a page that says why.
	if code, body := entraSignIn(t, h, p, s, tenantB, issuerOf(tenantB)); code != http.StatusForbidden || !strings.Contains(body, "not admitted") {
		t.Errorf("a user of another tenant: %d %s", code, body)
	}
	// The attacks on the template: a token whose iss is another tenant's
	// while its tid is admitted, a token with no tid, a tid that is not a
	// tenant ID (it would be pasted into the expected issuer).
	for name, tc := range map[string]struct{ tid, iss string }{
		"iss of another tenant, admitted tid": {tenantA, issuerOf(tenantB)},
		"no tid":                              {"", issuerOf(tenantA)},
		"tid not a GUID":                      {"x/../" + tenantA, issuerOf(tenantA)},
		"iss is the template itself":          {tenantA, "https://login.microsoftonline.com/{tenantid}/v2.0"},
	} {
		if code, _ := entraSignIn(t, h, p, s, tc.tid, tc.iss); code != http.StatusUnauthorized && code != http.StatusForbidden {
			t.Errorf("%s: %d, want a refusal", name, code)
		}
	}
	// tenants * admits any tenant, still with its own issuer only.
	any, p2, s2 := multiTenant(t, "*")
	if code, _ := entraSignIn(t, any, p2, s2, tenantB, issuerOf(tenantB)); code != http.StatusFound {
		t.Errorf("tenants *: %d", code)
	}
	if code, _ := entraSignIn(t, any, p2, s2, tenantB, issuerOf(tenantA)); code == http.StatusFound {
		t.Error("tenants *: a token with another tenant's iss signs in")
	}
}

func TestTemplateIssuerNeedsTenants(t *testing.T) {
	// A template issuer behind a URL that does not look multi-tenant (so no
	// config error at adapt time): discovery refuses it rather than accept
	// any tenant, and the user is told the site is misconfigured, not that
	// the provider is down.
	h, _, _ := multiTenantAt(t, "/entra-proxy/v2.0")
	res := serve(h, navigation("GET", "/"))
	if res.Code != http.StatusInternalServerError || !strings.Contains(res.Body.String(), "not set up correctly") || strings.Contains(res.Body.String(), "tenants") {
		t.Errorf("template issuer without tenants: %d %s", res.Code, res.Body)
	}
}

func TestExternalIDMetadataURL(t *testing.T) {
	for args, want := range map[[2]string]string{
		// Microsoft documents https://<subdomain>.ciamlogin.com/<tenant ID or subdomain.onmicrosoft.com>/v2.0.
		{"contoso", ""}: "https://contoso.ciamlogin.com/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration",
		{"Contoso", "CBF2E3D3-AF81-40DD-A396-AAE11D2C6B3F"}: "https://contoso.ciamlogin.com/cbf2e3d3-af81-40dd-a396-aae11d2c6b3f/v2.0/.well-known/openid-configuration",
	} {
		h := &Handler{ExternalID: args[0], ExternalIDTenant: args[1]}
		if got := h.metadataURL(""); got != want {
			t.Errorf("external_id %s %s: %s, want %s", args[0], args[1], got, want)
		}
	}
	// A bare tenant ID is not a subdomain: a config error says what to write.
	h := &Handler{ExternalID: "cbf2e3d3-af81-40dd-a396-aae11d2c6b3f", ClientID: "c"}
	if err := h.checkConfig(); err == nil || !strings.Contains(err.Error(), "is a tenant ID; give the tenant's subdomain") {
		t.Errorf("a bare tenant ID: %v", err)
	}
	h = &Handler{ExternalID: "contoso", ExternalIDTenant: "not-a-guid", ClientID: "c"}
	if err := h.checkConfig(); err == nil || !strings.Contains(err.Error(), "not a tenant ID") {
		t.Errorf("a tenant ID that is not one: %v", err)
	}
}

func TestAADSTSErrors(t *testing.T) {
	h, _, _ := setup(t, nil)
	reply := func(e, desc string) result {
		state, _, fc := pendingFlow(t, h, "/where?x=1")
		return serve(h, callbackRequest(state, fc, url.Values{"error": {e}, "error_description": {desc}}))
	}
	// Declined consent is a cancel: back where the user started.
	if res := reply("access_denied", "AADSTS65004: User declined to consent to access the app.\r\nTrace ID: 1\r\nCorrelation ID: 2\r\nTimestamp: 2025-01-01 00:00:00Z"); res.Code != http.StatusFound || res.Header().Get("Location") != "/where?x=1" {
		t.Errorf("AADSTS65004: %d %q", res.Code, res.Header().Get("Location"))
	}
	// Any other AADSTS code is a page that names it.
	res := reply("invalid_request", "AADSTS50011: The redirect URI 'x' specified in the request does not match the redirect URIs configured for the application.")
	if res.Code != http.StatusUnauthorized || !strings.Contains(res.Body.String(), "AADSTS50011") {
		t.Errorf("AADSTS50011: %d %s", res.Code, res.Body)
	}
}

// TestKeyIssuerOfTenantIndependentMetadata: Entra ID's tenant-independent
// JWKS names an issuer for some keys. access-tokens.md: keys "that have an
// issuer value with a GUID … should only be used when the iss claim in the
// token matches the value exactly"; a key with the {tenantid} template
// serves every tenant. The attack: tenant B's token signed with a key
// published for tenant A.
func TestKeyIssuerOfTenantIndependentMetadata(t *testing.T) {
	h, p, s := multiTenant(t, tenantA, tenantB)
	p.set(func(p *hostile) { p.keyIssuers = map[string]string{s.kid: issuerOf(tenantA)} })
	if code, body := entraSignIn(t, h, p, s, tenantA, issuerOf(tenantA)); code != http.StatusFound {
		t.Fatalf("tenant A's token with tenant A's key: %d %s", code, body)
	}
	if code, _ := entraSignIn(t, h, p, s, tenantB, issuerOf(tenantB)); code == http.StatusFound {
		t.Error("tenant B's token signed with a key published for tenant A signs in")
	}

	shared, sp, ss := multiTenant(t, tenantA, tenantB)
	sp.set(func(p *hostile) {
		p.keyIssuers = map[string]string{ss.kid: "https://login.microsoftonline.com/{tenantid}/v2.0"}
	})
	if code, body := entraSignIn(t, shared, sp, ss, tenantB, issuerOf(tenantB)); code != http.StatusFound {
		t.Errorf("a key for {tenantid} refused tenant B: %d %s", code, body)
	}
}

// TestV1TokensBesideATemplateIssuer: with a multi-tenant v2.0 issuer, an
// API still gets Entra's v1.0 access tokens (iss
// https://sts.windows.net/<tid>/) unless its manifest asks for v2:
// additional_issuer with the v1 template admits those of admitted tenants
// only, each checked against its own tenant's v1 issuer.
func TestV1TokensBesideATemplateIssuer(t *testing.T) {
	h, p, s := multiTenantAt(t, "/organizations/v2.0", tenantA)
	h2 := newTestHandler(t, p, func(h2 *Handler) {
		h2.Authority, h2.Policy, h2.PasswordResetPolicy = "", "", ""
		h2.Issuer, h2.Tenants = h.Issuer, []string{tenantA}
		h2.Audience = []string{"api://tasks"}
		h2.AdditionalIssuers = []AdditionalIssuer{{Issuer: "https://sts.windows.net/{tenantid}/", JWKSURI: p.srv.URL + "/common/discovery/keys"}}
	})
	v1 := func(tid, iss string) map[string]any {
		now := time.Now()
		return map[string]any{"iss": iss, "aud": "api://tasks", "tid": tid, "oid": "99999999-0000-0000-0000-000000000001",
			"sub": "99999999-0000-0000-0000-000000000001", "appid": "daemon", "roles": []string{"Tasks.Read.All"},
			"exp": now.Add(time.Hour).Unix(), "nbf": now.Unix(), "iat": now.Unix(), "ver": "1.0"}
	}
	if res := serve(h2, apiRequest("Bearer "+s.sign(t, v1(tenantA, "https://sts.windows.net/"+tenantA+"/")))); !res.reachedNext {
		t.Errorf("a v1.0 token of an admitted tenant: %d %s", res.Code, res.Header().Get("WWW-Authenticate"))
	}
	if res := serve(h2, apiRequest("Bearer "+s.sign(t, v1(tenantB, "https://sts.windows.net/"+tenantB+"/")))); res.reachedNext {
		t.Error("a v1.0 token of a tenant not admitted opens the API")
	}
	if res := serve(h2, apiRequest("Bearer "+s.sign(t, v1(tenantB, "https://sts.windows.net/"+tenantA+"/")))); res.reachedNext {
		t.Error("a v1.0 token claiming another tenant's issuer opens the API")
	}
}

// TestPerUserStateKeyedByTenant: an oid is unique within a tenant only, so
// signing out everywhere is keyed <tid>/<oid>: a user of another tenant
// with the same oid stays signed in; a sign-out recorded by oid alone (an
// operator who gives the oid to caddy b2c revoke) still counts.
func TestPerUserStateKeyedByTenant(t *testing.T) {
	h, p, s := multiTenant(t, tenantA, tenantB)
	signIn := func(tid string) []*http.Cookie {
		state, nonce, fc := pendingFlow(t, h, "/")
		claims := goodClaims(p, nonce)
		claims["iss"], claims["tid"], claims["ver"] = issuerOf(tid), tid, "2.0"
		delete(claims, "tfp")
		redeemWith(p, s.sign(t, claims))
		res := serve(h, callbackRequest(state, fc, url.Values{"code": {"c"}}))
		return []*http.Cookie{res.cookie(sessionCookie)}
	}
	a, b := signIn(tenantA), signIn(tenantB)
	res := serve(h, withCookies(withFetchSite(navigation("GET", "/.auth/logout?everywhere=1"), "same-origin"), a))
	if res.Code != http.StatusOK || opens(h, a) {
		t.Fatalf("sign-out everywhere in tenant A: %d", res.Code)
	}
	if !opens(h, b) {
		t.Error("tenant B's user with the same oid was signed out")
	}
	// Recorded by oid alone: every tenant's session of that oid goes.
	if err := h.signouts.Add(context.Background(), signouts.Entry{Kind: signouts.KindUser, Value: "user-1", Before: time.Now().UnixMilli() + 1, Expires: time.Now().Add(time.Hour).Unix()}); err != nil {
		t.Fatal(err)
	}
	if opens(h, b) {
		t.Error("a sign-out recorded by oid alone is not honoured")
	}
}

// TestExternalIDCustomDomain: with custom_domain, External ID's metadata
// is at https://<custom URL domain>/<tenant name or ID>/v2.0 (Microsoft's
// how-to-custom-url-domain.md), the shorthand's defaults kept; custom_domain
// needs external_id and a bare host name.
func TestExternalIDCustomDomain(t *testing.T) {
	for tenantID, want := range map[string]string{
		"":                                     "https://login.contoso.com/contoso.onmicrosoft.com/v2.0/.well-known/openid-configuration",
		"cbf2e3d3-af81-40dd-a396-aae11d2c6b3f": "https://login.contoso.com/cbf2e3d3-af81-40dd-a396-aae11d2c6b3f/v2.0/.well-known/openid-configuration",
	} {
		h := &Handler{ExternalID: "contoso", ExternalIDTenant: tenantID, CustomDomain: "Login.Contoso.com"}
		if got := h.metadataURL(""); got != want {
			t.Errorf("external_id contoso %s with custom_domain: %s, want %s", tenantID, got, want)
		}
	}
	h := &Handler{ExternalID: "contoso", CustomDomain: "login.contoso.com", ClientID: "c", ClientSecret: "s"}
	if err := h.checkConfig(); err != nil {
		t.Fatalf("a good custom_domain refused: %v", err)
	}
	for name, tc := range map[string]struct {
		h    Handler
		want string
	}{
		"without external_id": {Handler{Issuer: "https://login.contoso.com/x/v2.0", CustomDomain: "login.contoso.com"}, "only with external_id"},
		"a URL":               {Handler{ExternalID: "contoso", CustomDomain: "https://login.contoso.com"}, "not a host name"},
		"a path":              {Handler{ExternalID: "contoso", CustomDomain: "login.contoso.com/contoso"}, "not a host name"},
		"a port":              {Handler{ExternalID: "contoso", CustomDomain: "login.contoso.com:8443"}, "not a host name"},
	} {
		tc.h.ClientID = "c"
		if err := tc.h.checkConfig(); err == nil || !strings.Contains(err.Error(), "custom_domain") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
