// Package b2cemulator is a local Azure AD B2C tenant served by Caddy, for
// development, demos and tests. It speaks B2C's protocol with B2C's formats:
// per-policy discovery documents whose issuer holds the tenant GUID, JWKS,
// the authorize endpoint with an HTML sign-in page, the token endpoint and
// end_session. It is not an identity provider for production.
package b2cemulator

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-b2c/caddy-b2c/internal/site"
)

func init() {
	caddy.RegisterModule(Emulator{})
}

// Emulator is an HTTP handler that serves an Azure AD B2C tenant on its own
// site, under B2C's paths:
//
//	/{tenant}.onmicrosoft.com/{policy}/v2.0/.well-known/openid-configuration
//	/{tenant}.onmicrosoft.com/{policy}/discovery/v2.0/keys
//	/{tenant}.onmicrosoft.com/{policy}/oauth2/v2.0/authorize | token | logout
//
// and the same with `?p=<policy>` instead of the policy segment, or with the
// tenant GUID instead of `{tenant}.onmicrosoft.com`. Policy names are
// case-insensitive. Requests to any other path go to the next handler.
//
// A policy's kind follows its name: a name containing "reset" or "password"
// is a password-reset flow, one containing "edit" or "profile" a
// profile-edit flow, any other a sign-up/sign-in flow.
//
// `POST /{tenant}.onmicrosoft.com/emulator/rotate_keys` (with the admin key)
// makes a new signing key; the previous one stays published, as during a
// real rotation. `GET /{tenant}.onmicrosoft.com/emulator/mailbox` shows the
// verification codes that sign-up and password reset "send".
//
// It answers only loopback clients unless allow_remote is set. It is for
// development and tests: never put it in front of real users.
type Emulator struct {
	// The tenant name: the emulator serves `<tenant>.onmicrosoft.com`.
	// Default: contoso.
	Tenant string `json:"tenant,omitempty"`
	// The tenant GUID that appears in the issuer. Default: derived from the
	// tenant name, so it is stable across restarts.
	TenantID string `json:"tenant_id,omitempty"`
	// The user flows. Default: B2C_1_susi B2C_1_reset B2C_1_edit.
	Policies []string `json:"policies,omitempty"`
	// The registered applications. Default: one demo client,
	// `DemoClientID` with no secret, whose redirect URIs are the demo's.
	Clients []Client `json:"clients,omitempty"`
	// The web APIs that expose scopes (App registrations → Expose an API).
	// Default: one, https://<tenant>.onmicrosoft.com/api with demo.read
	// and demo.write.
	APIs []API `json:"apis,omitempty"`
	// The accounts that exist at start ("Sign up now" adds more, in memory).
	// Default: one demo user, whose credentials the sign-in page shows.
	Users []User `json:"users,omitempty"`
	// How long ID and access tokens live. Default: 1h.
	TokenLifetime caddy.Duration `json:"token_lifetime,omitempty"`
	// How long a refresh token may be redeemed (B2C's "Refresh token
	// lifetime"); after it, AADB2C90080. Single-page apps' live 24h
	// whatever this says. Default: 14 days.
	RefreshTokenLifetime caddy.Duration `json:"refresh_token_lifetime,omitempty"`
	// B2C's "Refresh token sliding window lifetime" (Bounded): after it,
	// counted from the sign-in, refreshing answers AADB2C90080 whatever the
	// newest refresh token's lifetime. At least refresh_token_lifetime, at
	// most 365 days; flavor b2c only. Default: 90 days.
	RefreshTokenWindow caddy.Duration `json:"refresh_token_window,omitempty"`
	// The issuer's form: "tenant_id" (default;
	// `<origin>/<tenant GUID>/v2.0/`) or "tfp"
	// (`<origin>/tfp/<tenant GUID>/<policy>/v2.0/`).
	IssuerForm string `json:"issuer_form,omitempty"`
	// How the B2C flavor's token responses write not_before, expires_in,
	// expires_on, id_token_expires_in and refresh_token_expires_in:
	// "number" (default, as access-tokens.md shows them) or "string" (as
	// openid-connect.md shows them: "expires_in": "3600"). Microsoft's two
	// pages disagree, so a client must read both.
	TokenNumbers string `json:"token_numbers,omitempty"`
	// The claim that names the policy in tokens: "tfp" (default, as user
	// flows do) or "acr" (lower-cased, as custom policies do).
	PolicyClaim string `json:"policy_claim,omitempty"`
	// Keep the signing keys in Caddy's storage, so a restart keeps them.
	// Default: a new key at every start.
	PersistKeys bool `json:"persist_keys,omitempty"`
	// Which platform to speak: "b2c" (default), "external_id" (Microsoft
	// Entra External ID) or "entra_id" (Entra ID, the workforce platform).
	// Both of the latter have no user flows in their URLs and speak the
	// Microsoft identity platform's v2.0 formats and AADSTS errors.
	Flavor string `json:"flavor,omitempty"`
	// With entra_id: also serve the multi-tenant organizations and common
	// endpoints, whose metadata issuer is the {tenantid} template, for
	// users of several tenants (User.TenantID). Default: off.
	MultiTenant bool `json:"multi_tenant,omitempty"`
	// Answer clients that are not on a loopback address. Default: off.
	// Whatever it says, the emulator answers only requests whose Host is a
	// loopback address, localhost, or a name its site block gives (DNS
	// rebinding protection, as Caddy's admin API's): a site that names no
	// host (`:9000`) answers loopback and localhost only.
	AllowRemote bool `json:"allow_remote,omitempty"`
	// The key its administrative endpoints (key rotation) require, as
	// `Authorization: Bearer <key>`; {env.*} and {file.*} work. Default: a
	// random key made at start and logged once.
	AdminKey string `json:"admin_key,omitempty"`

	// User-assigned managed identities: the emulator's managed identity
	// endpoint (/metadata/identity/oauth2/token, IMDS-shaped) issues their
	// tokens for api://AzureADTokenExchange, which a client's federated
	// credential with the tenant's issuer and the identity's object ID
	// trusts.
	ManagedIdentities []ManagedIdentity `json:"managed_identities,omitempty"`

	// B2C's "Web app session lifetime": how long the single sign-on session
	// (its cookie, which ends with the browser) lasts. B2C takes 15
	// minutes to 24 hours; the emulator takes any duration, for tests.
	// Default: 24h.
	SSOSessionLifetime caddy.Duration `json:"sso_session_lifetime,omitempty"`
	// B2C's "Web app session timeout": "rolling" (default; each single
	// sign-on extends the session) or "absolute".
	SSOSessionTimeout string `json:"sso_session_timeout,omitempty"`
	// B2C's "Keep me signed in session (days)", flavor b2c: the sign-in
	// page offers "Keep me signed in"; checked, the session lasts this long
	// in a persistent cookie, so it outlives the browser. B2C takes 1 to 90
	// days. Default: off.
	KeepMeSignedIn caddy.Duration `json:"keep_me_signed_in,omitempty"`

	// Put the single sign-on session's ID in ID tokens as `sid`, which
	// front-channel logout then sends (Entra ID does; B2C user flows do
	// not). Default: off.
	SIDClaim bool `json:"sid_claim,omitempty"`
	// The user flows' "Require ID Token in logout requests": end_session
	// refuses a request without id_token_hint (AADB2C90272). Default: off.
	LogoutRequiresIDToken bool `json:"logout_requires_id_token,omitempty"`
	// The "Single sign-on configuration": "tenant" (default) shares one
	// session between every application; "application" keeps one per
	// application, and end_session then ends it only when the request
	// names the application (client_id or id_token_hint).
	SSOScope string `json:"sso_scope,omitempty"`
	// The claims each user flow is set to return ("Application claims"),
	// by policy name. Default: every claim for sign-in and profile flows,
	// only `oid` for password reset flows.
	PolicyClaims map[string][]string `json:"policy_claims,omitempty"`
	// Put at_hash (the access token's hash) in ID tokens that come with an
	// access token. Default: off.
	AtHash bool `json:"at_hash,omitempty"`
	// The `sub` claim: "object_id" (default) or "not_supported", the legacy
	// setting whose `sub` is the same constant for every user.
	Subject string `json:"subject,omitempty"`
	// Security groups. With flavor external_id or entra_id, a user's
	// tokens carry their object IDs in `groups`, as Entra's "groups claim"
	// does; B2C emits none.
	Groups []Group `json:"groups,omitempty"`
	// Past this many groups, the tokens carry the overage indicator
	// (_claim_names, _claim_sources) instead of `groups`. Default: 200,
	// Entra's limit for JWTs.
	GroupsOverage int `json:"groups_overage,omitempty"`
	// Microsoft Graph's throttling, to test a client: this many Graph
	// requests from the start are answered 429 with Retry-After: 1.
	GraphThrottle int `json:"graph_throttle,omitempty"`
	// Microsoft Graph's latency, to test a client's time bounds.
	GraphDelay caddy.Duration `json:"graph_delay,omitempty"`

	state    *tenantState
	poolID   string
	demoUser bool // the default user: the sign-in page shows its credentials
	logger   *zap.Logger
	hosts    *site.Hosts // the names the site block gives
	// usedAssertions are the jti of client assertions accepted: each serves one request.
	usedAssertions *usedAssertions
}

// Client is an application registration.
type Client struct {
	// The application (client) ID.
	ClientID string `json:"client_id"`
	// The client secret. A web app redeems codes with it (without it, B2C
	// answers AADB2C90079); single-page and native apps have none.
	Secret string `json:"secret,omitempty"`
	// The platform of the registration: "web" (a confidential client; the
	// default when there is a secret), "spa" (public; PKCE required; the
	// token endpoint answers its origins' cross-origin requests) or
	// "native" (mobile and desktop: public; the default without a secret).
	Platform string `json:"platform,omitempty"`
	// The redirect URIs, matched exactly.
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	// The front-channel logout URL: end_session loads it in a hidden
	// iframe, with `iss` and `sid`, for each other application the user
	// signed in to during the single sign-on session.
	FrontChannelLogoutURI string `json:"front_channel_logout_uri,omitempty"`
	// The app roles this registration defines, by value, each with whom it
	// is assigned to: users (by email) and client applications (by client
	// ID, an application permission).
	AppRoles map[string][]string `json:"app_roles,omitempty"`
	// Microsoft Graph application permissions granted (with admin consent)
	// to this client, such as GroupMember.Read.All.
	GraphPermissions []string `json:"graph_permissions,omitempty"`
	// Certificate credentials (PEM files): the client may prove itself
	// with an assertion signed by one (Entra ID and External ID flavors).
	Certificates []string `json:"certificates,omitempty"`
	// Federated identity credentials: tokens of another issuer (a
	// Kubernetes cluster, a managed identity of the tenant) that prove the
	// client (Entra ID and External ID flavors).
	FederatedCredentials []FederatedCredential `json:"federated_credentials,omitempty"`
	// The optional claims its ID tokens carry (the manifest's
	// optionalClaims.idToken; Entra ID and External ID flavors): sid,
	// login_hint, auth_time, email, xms_edov. Entra's v2.0 ID tokens have
	// none of them unless the app asks.
	OptionalClaims []string `json:"optional_claims,omitempty"`

	certificates []registeredCertificate
}

// API is a web API registration: its App ID URI, its application (client)
// ID, which its access tokens carry as `aud`, and the scopes it exposes. A
// scope `<App ID URI>/<scope>` in a request asks for a token for it.
type API struct {
	AppIDURI string   `json:"app_id_uri"`
	ClientID string   `json:"client_id,omitempty"` // default: derived from the App ID URI
	Scopes   []string `json:"scopes"`
	// App roles, as on Client: value → users' emails and client IDs.
	AppRoles map[string][]string `json:"app_roles,omitempty"`
}

// Group is a security group and its members (by email).
type Group struct {
	ObjectID    string   `json:"object_id"`
	DisplayName string   `json:"display_name,omitempty"`
	Members     []string `json:"members,omitempty"`
}

// User is a local account.
type User struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	// The object ID (`oid` and `sub`). Default: derived from the email.
	ObjectID   string `json:"object_id,omitempty"`
	Name       string `json:"name,omitempty"`
	GivenName  string `json:"given_name,omitempty"`
	FamilyName string `json:"family_name,omitempty"`
	// The identity provider, in the `idp` claim; none for local accounts.
	IDP string `json:"idp,omitempty"`
	// The user's tenant, for a multi-tenant entra_id. Default: the
	// emulator's tenant_id.
	TenantID string `json:"tenant_id,omitempty"`
	// More claims, such as `extension_Role`.
	Claims map[string]string `json:"claims,omitempty"`
	// How the token endpoint answers this user's refresh grants, to test a
	// relying party: interaction_required (Conditional Access: MFA step-up),
	// consent_required, login_required, or unavailable (503). Default: they
	// succeed.
	RefreshError string `json:"refresh_error,omitempty"`
	// The claims challenge sent with interaction_required, as Entra sends
	// one for an authentication context or a Conditional Access policy.
	RefreshClaims string `json:"refresh_claims,omitempty"`
}

// Defaults for a bare `b2c_emulator`.
const (
	DemoTenant       = "contoso"
	DemoClientID     = "6d4c8a31-2f1e-4b8a-9c57-0e3f1a2b4c5d"
	DemoUserEmail    = "ada@contoso.example"
	DemoUserPassword = "Passw0rd!"
)

// DemoRedirectURIs are the demo client's redirect URIs: the demo site's
// callback on http://localhost:8080 and on https://localhost.
var DemoRedirectURIs = []string{
	"http://localhost:8080/.auth/login/b2c/callback",
	"https://localhost/.auth/login/b2c/callback",
}

// CaddyModule returns the Caddy module information.
func (Emulator) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.b2c_emulator",
		New: func() caddy.Module { return new(Emulator) },
	}
}

var guidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// tenantPattern is what B2C accepts as a tenant name.
var tenantPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Provision sets the defaults and takes the tenant's state from the pool,
// so that a config reload keeps codes, sessions and signed-up users.
func (e *Emulator) Provision(ctx caddy.Context) error {
	e.logger, e.hosts = ctx.Logger(), new(site.Hosts)
	if e.AdminKey != "" {
		key, err := caddy.NewReplacer().ReplaceOrErr(e.AdminKey, true, true)
		if err != nil {
			return fmt.Errorf("admin_key: a placeholder is unset or unknown: %v", err)
		}
		e.AdminKey = key
	}
	e.usedAssertions = &usedAssertions{}
	for i := range e.Clients {
		certs, err := loadCertificates(e.Clients[i].Certificates)
		if err != nil {
			return fmt.Errorf("client %s: %v", e.Clients[i].ClientID, err)
		}
		e.Clients[i].certificates = certs
	}
	if e.Tenant == "" {
		e.Tenant = DemoTenant
	}
	e.Tenant = strings.ToLower(strings.TrimSuffix(e.Tenant, ".onmicrosoft.com"))
	if e.TenantID == "" {
		e.TenantID = derivedGUID("tenant:" + e.Tenant)
	}
	e.TenantID = strings.ToLower(e.TenantID)
	if e.Flavor == "" {
		e.Flavor = FlavorB2C
	}
	if e.Flavor != FlavorB2C && len(e.Policies) > 0 {
		return fmt.Errorf("policies: flavor %s has no user flows in its URLs", e.Flavor)
	}
	switch {
	case e.Flavor != FlavorB2C:
		e.Policies = []string{entraPolicy}
	case len(e.Policies) == 0:
		e.Policies = []string{"B2C_1_susi", "B2C_1_reset", "B2C_1_edit"}
	}
	if len(e.Clients) == 0 {
		e.Clients = []Client{{ClientID: DemoClientID, RedirectURIs: DemoRedirectURIs}}
	}
	if len(e.APIs) == 0 {
		e.APIs = []API{{AppIDURI: "https://" + e.Tenant + ".onmicrosoft.com/api", Scopes: []string{"demo.read", "demo.write"}}}
	}
	for i := range e.APIs {
		if a := &e.APIs[i]; a.ClientID == "" {
			a.ClientID = derivedGUID("api:" + e.Tenant + ":" + a.AppIDURI)
		}
	}
	for i := range e.Clients {
		if c := &e.Clients[i]; c.Platform == "" {
			c.Platform = "native"
			if c.Secret != "" || len(c.Certificates) > 0 || len(c.FederatedCredentials) > 0 {
				c.Platform = "web"
			}
		}
	}
	if len(e.Users) == 0 {
		e.demoUser = true
		e.Users = []User{{Email: DemoUserEmail, Password: DemoUserPassword, Name: "Ada Lovelace", GivenName: "Ada", FamilyName: "Lovelace"}}
	}
	for i := range e.Users {
		if e.Users[i].ObjectID == "" {
			e.Users[i].ObjectID = derivedGUID("user:" + e.Tenant + ":" + strings.ToLower(e.Users[i].Email))
		}
	}
	for i := range e.ManagedIdentities {
		if m := &e.ManagedIdentities[i]; m.ObjectID == "" {
			m.ObjectID = derivedGUID("managed identity:" + e.Tenant + ":" + m.ClientID)
		}
	}
	for i := range e.Clients {
		for j := range e.Clients[i].FederatedCredentials {
			if fc := &e.Clients[i].FederatedCredentials[j]; len(fc.Audiences) == 0 {
				fc.Audiences = []string{tokenExchangeAudience}
			}
		}
	}
	if e.GroupsOverage == 0 {
		e.GroupsOverage = 200
	}
	if e.TokenLifetime == 0 {
		e.TokenLifetime = caddy.Duration(time.Hour)
	}
	if e.RefreshTokenLifetime == 0 {
		e.RefreshTokenLifetime = caddy.Duration(DefaultRefreshTokenLifetime)
	}
	if e.SSOSessionLifetime == 0 {
		e.SSOSessionLifetime = caddy.Duration(24 * time.Hour) // B2C's default, 1440 minutes
	}
	if e.SSOSessionTimeout == "" {
		e.SSOSessionTimeout = "rolling"
	}
	if e.RefreshTokenWindow != 0 && e.Flavor != FlavorB2C {
		return fmt.Errorf("refresh_token_window: only flavor b2c has a sliding window (Entra's refresh tokens have none)")
	}
	if e.RefreshTokenWindow == 0 && e.Flavor == FlavorB2C {
		e.RefreshTokenWindow = caddy.Duration(DefaultRefreshTokenWindow)
	}
	if e.IssuerForm == "" {
		e.IssuerForm = "tenant_id"
	}
	if e.PolicyClaim == "" {
		e.PolicyClaim = "tfp"
	}
	if e.SSOScope == "" {
		e.SSOScope = "tenant"
	}
	if e.Subject == "" {
		e.Subject = "object_id"
	}
	if err := e.validate(); err != nil {
		return err
	}

	// One state per distinct configuration: an identical reload keeps it.
	cfg, err := json.Marshal(e)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(cfg)
	e.poolID = fmt.Sprintf("%x", sum[:])
	val, _, err := tenants.LoadOrNew(e.poolID, func() (caddy.Destructor, error) {
		return newTenantState(ctx, e)
	})
	if err != nil {
		return err
	}
	e.state = val.(*tenantState)
	e.logger.Warn("b2c_emulator is a local test identity provider; it is not for production",
		zap.String("tenant", e.Tenant+".onmicrosoft.com"),
		zap.String("tenant_id", e.TenantID),
		zap.Bool("allow_remote", e.AllowRemote))
	if e.AdminKey == "" {
		e.AdminKey = e.state.adminKey
		e.logger.Warn("b2c_emulator admin key (for POST …/emulator/rotate_keys; set admin_key to choose one)", zap.String("admin_key", e.AdminKey))
	}
	return nil
}

// admin tells whether a request carries the admin key, and comes from no
// other site.
func (e *Emulator) admin(r *http.Request) bool {
	scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	return ok && strings.EqualFold(scheme, "Bearer") && !crossSite(r) &&
		subtle.ConstantTimeCompare([]byte(strings.TrimSpace(key)), []byte(e.AdminKey)) == 1
}

// validate checks the configuration; every error names the field.
func (e *Emulator) validate() error {
	if !tenantPattern.MatchString(e.Tenant) {
		return fmt.Errorf("tenant: %q is not a tenant name (letters, digits and dashes)", e.Tenant)
	}
	if !guidPattern.MatchString(e.TenantID) {
		return fmt.Errorf("tenant_id: %q is not a GUID", e.TenantID)
	}
	seen := map[string]bool{}
	for _, p := range e.Policies {
		if p == "" || strings.ContainsAny(p, "/?#& ") {
			return fmt.Errorf("policies: %q is not a policy name", p)
		}
		if seen[strings.ToLower(p)] {
			return fmt.Errorf("policies: %q is listed twice", p)
		}
		seen[strings.ToLower(p)] = true
	}
	clients := map[string]bool{}
	for _, c := range e.Clients {
		if c.ClientID == "" {
			return fmt.Errorf("client: client_id is required")
		}
		if clients[c.ClientID] {
			return fmt.Errorf("client: %q is registered twice", c.ClientID)
		}
		clients[c.ClientID] = true
		for _, u := range c.RedirectURIs {
			pu, err := url.Parse(u)
			if err != nil || pu.Scheme == "" || pu.Host == "" || pu.Fragment != "" {
				return fmt.Errorf("client %s: redirect_uri %q is not an absolute URL", c.ClientID, u)
			}
		}
		switch {
		case c.Platform == "web" && c.Secret == "" && len(c.Certificates) == 0 && len(c.FederatedCredentials) == 0:
			return fmt.Errorf("client %s: platform web needs a secret, a certificate or a federated_credential (a web app is a confidential client)", c.ClientID)
		case (c.Platform == "spa" || c.Platform == "native") && (c.Secret != "" || len(c.Certificates) > 0 || len(c.FederatedCredentials) > 0):
			return fmt.Errorf("client %s: platform %s is a public client and has no secret, certificate or federated credential", c.ClientID, c.Platform)
		case c.Platform != "web" && c.Platform != "spa" && c.Platform != "native":
			return fmt.Errorf("client %s: platform %q is not web, spa or native", c.ClientID, c.Platform)
		}
		for _, oc := range c.OptionalClaims {
			if !slices.Contains(optionalClaims, oc) {
				return fmt.Errorf("client %s: optional_claims: %q is not one the emulator knows (%s)", c.ClientID, oc, strings.Join(optionalClaims, ", "))
			}
		}
		for _, fc := range c.FederatedCredentials {
			if u, err := url.Parse(fc.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
				return fmt.Errorf("client %s: federated_credential issuer %q is not an absolute http(s) URL", c.ClientID, fc.Issuer)
			}
			if fc.Subject == "" {
				return fmt.Errorf("client %s: federated_credential needs a subject", c.ClientID)
			}
		}
		if u := c.FrontChannelLogoutURI; u != "" {
			pu, err := url.Parse(u)
			if err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" || pu.Fragment != "" {
				return fmt.Errorf("client %s: front_channel_logout_uri %q is not an absolute http(s) URL", c.ClientID, u)
			}
		}
	}
	identities := map[string]bool{}
	for _, m := range e.ManagedIdentities {
		if m.ClientID == "" || identities[m.ClientID] {
			return fmt.Errorf("managed_identity: %q is empty or listed twice", m.ClientID)
		}
		identities[m.ClientID] = true
	}
	for _, a := range e.APIs {
		if u, err := url.Parse(a.AppIDURI); err != nil || u.Scheme == "" || u.Host == "" || strings.HasSuffix(a.AppIDURI, "/") {
			return fmt.Errorf("api: %q is not an App ID URI (https://<tenant>.onmicrosoft.com/<name>)", a.AppIDURI)
		}
		if len(a.Scopes) == 0 {
			return fmt.Errorf("api %s: scopes are required", a.AppIDURI)
		}
	}
	users := map[string]bool{}
	for _, u := range e.Users {
		if !strings.Contains(u.Email, "@") {
			return fmt.Errorf("user: %q is not an email address", u.Email)
		}
		if u.Password == "" {
			return fmt.Errorf("user %s: password is required", u.Email)
		}
		if users[strings.ToLower(u.Email)] {
			return fmt.Errorf("user: %q is defined twice", u.Email)
		}
		users[strings.ToLower(u.Email)] = true
		if u.ObjectID != "" && !guidPattern.MatchString(u.ObjectID) {
			return fmt.Errorf("user %s: object_id %q is not a GUID", u.Email, u.ObjectID)
		}
	}
	if time.Duration(e.TokenLifetime) < time.Minute || time.Duration(e.TokenLifetime) > 24*time.Hour {
		return fmt.Errorf("token_lifetime: %s is outside 1m..24h", time.Duration(e.TokenLifetime))
	}
	if e.RefreshTokenLifetime < caddy.Duration(time.Second) || time.Duration(e.RefreshTokenLifetime) > 90*24*time.Hour {
		return fmt.Errorf("refresh_token_lifetime: %s is outside 1s..90 days", time.Duration(e.RefreshTokenLifetime))
	}
	if e.RefreshTokenWindow != 0 && (e.RefreshTokenWindow < e.RefreshTokenLifetime || time.Duration(e.RefreshTokenWindow) > 365*24*time.Hour) {
		return fmt.Errorf("refresh_token_window: %s must be at least refresh_token_lifetime (%s) and at most 365 days", time.Duration(e.RefreshTokenWindow), time.Duration(e.RefreshTokenLifetime))
	}
	if e.SSOSessionLifetime < 0 {
		return fmt.Errorf("sso_session_lifetime: %s is negative", time.Duration(e.SSOSessionLifetime))
	}
	if e.SSOSessionTimeout != "rolling" && e.SSOSessionTimeout != "absolute" {
		return fmt.Errorf("sso_session_timeout: %q is neither rolling nor absolute", e.SSOSessionTimeout)
	}
	if e.KeepMeSignedIn != 0 && (e.entra() || e.KeepMeSignedIn < 0 || time.Duration(e.KeepMeSignedIn) > 90*24*time.Hour) {
		return fmt.Errorf("keep_me_signed_in: flavor b2c only, at most 90 days (B2C's \"Keep me signed in session (days)\" is 1 to 90)")
	}
	if e.TokenNumbers != "" && e.TokenNumbers != "number" && e.TokenNumbers != "string" {
		return fmt.Errorf("token_numbers: %q is neither number nor string", e.TokenNumbers)
	}
	if e.TokenNumbers == "string" && e.entra() {
		return fmt.Errorf("token_numbers string: flavor %s answers with JSON numbers, as the identity platform does", e.Flavor)
	}
	if e.IssuerForm != "tenant_id" && e.IssuerForm != "tfp" {
		return fmt.Errorf("issuer_form: %q is neither tenant_id nor tfp", e.IssuerForm)
	}
	if e.Subject != "object_id" && e.Subject != "not_supported" {
		return fmt.Errorf("subject: %q is neither object_id nor not_supported", e.Subject)
	}
	for p := range e.PolicyClaims {
		if e.policyNamed(p) == "" {
			return fmt.Errorf("policy_claims: %q is not one of the policies", p)
		}
	}
	if e.Flavor != FlavorB2C && e.Flavor != FlavorExternalID && e.Flavor != FlavorEntraID {
		return fmt.Errorf("flavor: %q is not b2c, external_id or entra_id", e.Flavor)
	}
	if e.MultiTenant && e.Flavor != FlavorEntraID {
		return fmt.Errorf("multi_tenant: only with flavor entra_id")
	}
	for _, g := range e.Groups {
		if !guidPattern.MatchString(strings.ToLower(g.ObjectID)) {
			return fmt.Errorf("group: %q is not an object ID (GUID)", g.ObjectID)
		}
	}
	for _, u := range e.Users {
		if u.TenantID != "" && !guidPattern.MatchString(u.TenantID) {
			return fmt.Errorf("user %s: tenant_id %q is not a GUID", u.Email, u.TenantID)
		}
	}
	if e.SSOScope != "tenant" && e.SSOScope != "application" {
		return fmt.Errorf("sso_scope: %q is neither tenant nor application", e.SSOScope)
	}
	if e.PolicyClaim != "tfp" && e.PolicyClaim != "acr" {
		return fmt.Errorf("policy_claim: %q is neither tfp nor acr", e.PolicyClaim)
	}
	return nil
}

// Cleanup releases the tenant's state.
func (e *Emulator) Cleanup() error {
	if e.poolID != "" {
		_, err := tenants.Delete(e.poolID)
		return err
	}
	return nil
}

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
	if !ours {
		return next.ServeHTTP(w, r)
	}
	if !e.AllowRemote && !isLoopback(r) {
		return caddyhttp.Error(http.StatusForbidden, fmt.Errorf("b2c_emulator answers only loopback clients (see allow_remote)"))
	}
	w.Header().Set("Cache-Control", "no-store")
	if rt.endpoint == "not_found" {
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
	case "rotate_keys":
		if r.Method != http.MethodPost {
			return caddyhttp.Error(http.StatusMethodNotAllowed, nil)
		}
		if !e.admin(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="b2c_emulator admin"`)
			return writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "the emulator's administrative endpoints need its admin key: Authorization: Bearer <admin_key>"})
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

// endpoints maps the path after the tenant (and policy) to an endpoint.
var endpoints = map[string]string{
	"v2.0/.well-known/openid-configuration": "openid-configuration",
	"discovery/v2.0/keys":                   "keys",
	"discovery/keys":                        "keys", // the v1 path older samples use
	"oauth2/v2.0/authorize":                 "authorize",
	"oauth2/v2.0/token":                     "token",
	"oauth2/v2.0/logout":                    "logout",
	"emulator/rotate_keys":                  "rotate_keys",
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

// derivedGUID makes a stable GUID-shaped identifier from a seed.
func derivedGUID(seed string) string {
	s := sha256.Sum256([]byte(seed))
	s[6] = s[6]&0x0f | 0x50 // version 5 shape
	s[8] = s[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", s[0:4], s[4:6], s[6:8], s[8:10], s[10:16])
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Emulator)(nil)
	_ caddy.CleanerUpper          = (*Emulator)(nil)
	_ caddyhttp.MiddlewareHandler = (*Emulator)(nil)
)

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
