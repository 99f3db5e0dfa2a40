package b2cemulator

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/caddy-b2c/caddy-b2c/internal/site"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// Requests: which endpoint of the tenant a request is for, who may ask
// it, and the answers every endpoint shares.

// ServeHTTP answers the tenant's endpoints and passes anything else on.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	rt, ours := e.route(r)
	ours = ours || strings.HasPrefix(r.URL.Path, "/v1.0/") || (r.URL.Path == managedIdentityPath && len(e.ManagedIdentities) > 0)
	if ours && !e.hostAllowed(r) {
		// A DNS-rebinding page on another name reaches a host-less site
		// through the browser: it must not read the mailbox or post forms.
		return caddyhttp.Error(http.StatusForbidden, fmt.Errorf("b2c_emulator: Host %q is not a loopback address, localhost or a name of its site", r.Host))
	}
	if r.URL.Path == managedIdentityPath && len(e.ManagedIdentities) > 0 {
		if !e.AllowRemote && !isLoopback(r) {
			return caddyhttp.Error(http.StatusForbidden, fmt.Errorf("b2c_emulator answers only loopback clients (see allow_remote)"))
		}
		w.Header().Set("Cache-Control", "no-store")
		return e.managedIdentityToken(w, r)
	}
	if strings.HasPrefix(r.URL.Path, "/v1.0/") {
		if !e.AllowRemote && !isLoopback(r) {
			return caddyhttp.Error(http.StatusForbidden, fmt.Errorf("b2c_emulator answers only loopback clients (see allow_remote)"))
		}
		return e.graph(w, r)
	}
	tenant, unknown := "", false
	if !ours {
		if tenant, unknown = unknownTenant(r); !unknown {
			return next.ServeHTTP(w, r)
		}
	}
	if !e.AllowRemote && !isLoopback(r) {
		return caddyhttp.Error(http.StatusForbidden, fmt.Errorf("b2c_emulator answers only loopback clients (see allow_remote)"))
	}
	w.Header().Set("Cache-Control", "no-store")
	if unknown && e.entra() {
		// The identity platform's answer (AADSTS90002, as captured in
		// MSAL's and the Azure CLI's issue threads).
		return e.tokenError(w, http.StatusBadRequest, b2cError{"invalid_tenant", "AADSTS90002", "Tenant '" + tenant + "' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."})
	}
	if unknown || rt.endpoint == "not_found" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		_, err := io.WriteString(w, "<!DOCTYPE html><title>404 - File or directory not found.</title><h2>404 - File or directory not found.</h2>"+
			"<h3>The resource you are looking for might have been removed, had its name changed, or is temporarily unavailable.</h3>")
		return err
	}
	if e.cors(w, r, rt) {
		return nil // a preflight, answered
	}
	switch rt.endpoint {
	case "mailbox":
		return e.mailboxPage(w)
	case "rotate_keys", "clock":
		if r.Method != http.MethodPost {
			return caddyhttp.Error(http.StatusMethodNotAllowed, nil)
		}
		if !e.admin(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="b2c_emulator admin"`)
			return writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "the emulator's administrative endpoints need its admin key: Authorization: Bearer <admin_key>"})
		}
		if rt.endpoint == "clock" {
			return e.advanceClock(w, r)
		}
		kid, err := e.state.rotate()
		if err != nil {
			return caddyhttp.Error(http.StatusInternalServerError, err)
		}
		e.logger.Info("signing key rotated", zap.String("kid", kid))
		return writeJSON(w, http.StatusOK, map[string]string{"kid": kid})
	}
	if rt.unknownPolicy != "" {
		b := errRequest("AADB2C90022", fmt.Sprintf("Unable to return metadata for the policy '%s' in tenant '%s.onmicrosoft.com'.", rt.unknownPolicy, e.Tenant))
		if rt.endpoint == "authorize" || rt.endpoint == "logout" {
			return e.errorPage(w, http.StatusBadRequest, b.code, b.msg)
		}
		return e.tokenError(w, http.StatusBadRequest, b)
	}
	if rt.policy == "" {
		if rt.endpoint == "token" {
			// The tenant's own token endpoint (Entra's, not a user flow's):
			// where a B2C app gets app-only tokens for Microsoft Graph.
			return e.tenantToken(w, r, rt)
		}
		return e.errorPage(w, http.StatusBadRequest, "AADB2C90083", "The request is missing required parameter: p.")
	}
	switch rt.endpoint {
	case "openid-configuration":
		if e.entra() {
			return writeJSON(w, http.StatusOK, e.discoveryEntra(r, rt))
		}
		return writeJSON(w, http.StatusOK, e.discovery(r, rt))
	case "keys":
		return writeJSON(w, http.StatusOK, e.state.jwks())
	case "authorize":
		return e.authorize(w, r, rt)
	case "token":
		return e.token(w, r, rt)
	case "logout":
		return e.logout(w, r, rt)
	}
	return next.ServeHTTP(w, r)
}

// route is where a request goes in the tenant.
type route struct {
	tenantSegment string // as requested: "contoso.onmicrosoft.com" or the GUID
	policy        string // the configured spelling; "" when unknown or missing
	policyInPath  bool   // the path form rather than ?p=
	tfp           bool   // under /tfp/
	endpoint      string
	unknownPolicy string // a policy named in the request that does not exist
	tenantID      string // entra flavors: the tenant of a tenant-specific endpoint
	multiTenant   bool   // entra_id: the organizations or common endpoint
}

// route maps a request path to an endpoint, or reports it is not ours.
func (e *Emulator) route(r *http.Request) (route, bool) {
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	var rt route
	if len(segs) > 0 && strings.EqualFold(segs[0], "tfp") {
		rt.tfp = true
		segs = segs[1:]
	}
	if len(segs) < 2 {
		return rt, false
	}
	if e.entra() {
		if rt.tfp {
			return rt, false
		}
		return e.routeEntra(segs)
	}
	t := strings.ToLower(segs[0])
	if t != e.Tenant+".onmicrosoft.com" && t != e.TenantID {
		return rt, false
	}
	rt.tenantSegment = segs[0]
	segs = segs[1:]
	if p := e.policyNamed(segs[0]); p != "" && len(segs) > 1 {
		rt.policy, rt.policyInPath = p, true
		segs = segs[1:]
	} else if p := r.URL.Query().Get("p"); p != "" {
		if rt.policy = e.policyNamed(p); rt.policy == "" {
			rt.unknownPolicy = p
		}
	} else if !strings.EqualFold(segs[0], "oauth2") && !strings.EqualFold(segs[0], "discovery") &&
		(len(segs) > 2 && strings.EqualFold(segs[1], "v2.0") || len(segs) > 3 && (strings.EqualFold(segs[1], "oauth2") || strings.EqualFold(segs[1], "discovery"))) {
		rt.unknownPolicy = segs[0] // the path form with a policy that does not exist
		segs = segs[1:]
	}
	if rt.endpoint = endpoints[strings.ToLower(strings.Join(segs, "/"))]; rt.endpoint == "" {
		rt.endpoint = "not_found" // under the tenant: B2C's 404, not the next handler
	}
	return rt, true
}

// unknownTenant tells a request for an endpoint of a tenant the emulator
// is not ({tenant}/[policy/]<endpoint>), and names that tenant.
func unknownTenant(r *http.Request) (string, bool) {
	segs := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(segs) > 0 && strings.EqualFold(segs[0], "tfp") {
		segs = segs[1:]
	}
	for skip := 1; skip <= 2 && skip < len(segs); skip++ {
		if ep := endpoints[strings.ToLower(strings.Join(segs[skip:], "/"))]; ep != "" && ep != "mailbox" && ep != "clock" && ep != "rotate_keys" {
			return segs[0], true
		}
	}
	return "", false
}

// endpoints maps the path after the tenant (and policy) to an endpoint.
var endpoints = map[string]string{
	"v2.0/.well-known/openid-configuration": "openid-configuration",
	"discovery/v2.0/keys":                   "keys",
	"discovery/keys":                        "keys", // the v1 path older samples use
	"oauth2/v2.0/authorize":                 "authorize",
	"oauth2/v2.0/token":                     "token",
	"oauth2/v2.0/logout":                    "logout",
	"emulator/rotate_keys":                  "rotate_keys",
	"emulator/clock":                        "clock",
	"emulator/mailbox":                      "mailbox",
}

// policyNamed returns the configured spelling of a policy name, matched
// case-insensitively, or "".
func (e *Emulator) policyNamed(name string) string {
	for _, p := range e.Policies {
		if strings.EqualFold(p, name) {
			return p
		}
	}
	return ""
}

// policyKind tells what a user flow does: "susi", "reset" or "edit".
func policyKind(policy string) string {
	p := strings.ToLower(policy)
	switch {
	case strings.Contains(p, "reset") || strings.Contains(p, "password"):
		return "reset"
	case strings.Contains(p, "edit") || strings.Contains(p, "profile"):
		return "edit"
	}
	return "susi"
}

func (e *Emulator) client(id string) *Client {
	for i := range e.Clients {
		if e.Clients[i].ClientID == id {
			return &e.Clients[i]
		}
	}
	return nil
}

// origin is the scheme and host the request was made to.
func origin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// issuer is the `iss` of tokens issued for a policy.
func (e *Emulator) issuer(r *http.Request, policy string) string {
	if e.IssuerForm == "tfp" {
		return origin(r) + "/tfp/" + e.TenantID + "/" + policy + "/v2.0/" // the policy's own casing
	}
	return origin(r) + "/" + e.TenantID + "/v2.0/"
}

// hostAllowed tells whether a request's Host is a loopback address,
// localhost, or a name the emulator's site block gives.
func (e *Emulator) hostAllowed(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Unmap().IsLoopback() {
		return true
	}
	srv, _ := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if srv == nil || host == "" {
		return false
	}
	for _, pattern := range e.hosts.Of(srv, e) {
		if site.HostMatches(pattern, host) {
			return true
		}
	}
	return false
}

func isLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// cors answers browsers' cross-origin requests as B2C does for single-page
// apps: metadata and keys are readable by any origin; the token endpoint by
// the origins of the spa registrations' redirect URIs. It reports whether
// it answered a preflight.
func (e *Emulator) cors(w http.ResponseWriter, r *http.Request, rt route) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	h := w.Header()
	switch rt.endpoint {
	case "openid-configuration", "keys":
		h.Set("Access-Control-Allow-Origin", "*")
	case "token":
		if !e.spaOrigin(origin) {
			return false
		}
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
	default:
		return false
	}
	if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Content-Type")
		h.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	return false
}

// spaOrigin tells whether an origin is that of a single-page app's
// redirect URI.
func (e *Emulator) spaOrigin(origin string) bool {
	for _, c := range e.Clients {
		if c.Platform != "spa" {
			continue
		}
		for _, u := range c.RedirectURIs {
			if pu, err := url.Parse(u); err == nil && strings.EqualFold(pu.Scheme+"://"+pu.Host, origin) {
				return true
			}
		}
	}
	return false
}

// advanceClock moves the tenant's clock ahead by ?advance=<duration>
// (POST …/emulator/clock, with the admin key): codes, single sign-on
// sessions, refresh tokens and the tokens it issues then age as if that
// time had passed. It never goes back.
func (e *Emulator) advanceClock(w http.ResponseWriter, r *http.Request) error {
	by, err := caddy.ParseDuration(r.URL.Query().Get("advance"))
	if err != nil || by <= 0 {
		return writeJSON(w, http.StatusBadRequest, map[string]string{"error": "advance: want a positive duration, such as 90s or 1h"})
	}
	e.state.offset.Add(int64(by))
	now := e.state.now()
	e.logger.Info("the emulator's clock moved ahead", zap.Duration("by", by), zap.Time("now", now))
	return writeJSON(w, http.StatusOK, map[string]string{"now": now.UTC().Format(time.RFC3339)})
}
