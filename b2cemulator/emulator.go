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
	"net/http"
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
// real rotation. `POST /{tenant}.onmicrosoft.com/emulator/clock?advance=1h`
// (with the admin key) moves the tenant's clock ahead, so that codes,
// sessions and tokens age without waiting. `GET
// /{tenant}.onmicrosoft.com/emulator/mailbox` shows the verification codes
// that sign-up and password reset "send".
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
	// The sign-up and sign-in user flows with self-service password reset
	// (B2C's recommended flows offer it): "Forgot your password?" resets
	// the password inside the flow, which then signs the user in, instead
	// of answering the app with AADB2C90118. Flavor b2c.
	SelfServicePasswordReset []string `json:"self_service_password_reset,omitempty"`
	// The policies (flavor b2c) that ask for a second factor after the
	// password: a one-time code, shown on the mailbox page — an MFA user
	// flow or custom policy.
	MFAPolicies []string `json:"mfa_policies,omitempty"`
	// The authentication contexts (Entra flavors) whose Conditional Access
	// policy asks for a second factor: a sign-in whose claims request asks
	// for one gives the one-time code, and its tokens carry it in acrs.
	// Contexts no policy targets are satisfied without one.
	AuthContexts []string `json:"auth_contexts,omitempty"`
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
	ObjectID    string `json:"object_id"`
	DisplayName string `json:"display_name,omitempty"`
	// security (default) or microsoft365: Graph's getMemberGroups with
	// securityEnabledOnly lists only the former.
	Type    string   `json:"type,omitempty"`
	Members []string `json:"members,omitempty"`
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
	// invalid_grant (the same step-up in the shape real answers have:
	// AADSTS50076 with suberror basic_action), consent_required,
	// login_required, or unavailable (503). Default: they succeed.
	RefreshError string `json:"refresh_error,omitempty"`
	// The claims challenge sent with interaction_required or invalid_grant,
	// as Entra sends one for an authentication context or a Conditional
	// Access policy.
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
	if e.Flavor != FlavorB2C && len(e.MFAPolicies) > 0 {
		return fmt.Errorf("mfa_policies: only flavor b2c has user flows (the Entra flavors ask for a second factor by auth_contexts)")
	}
	if e.Flavor == FlavorB2C && len(e.AuthContexts) > 0 {
		return fmt.Errorf("auth_contexts: authentication contexts are the Entra flavors' (B2C asks for a second factor by mfa_policies)")
	}
	if e.Flavor != FlavorB2C && len(e.SelfServicePasswordReset) > 0 {
		return fmt.Errorf("self_service_password_reset: only flavor b2c has user flows (the identity platform always resets in the flow)")
	}
	for _, p := range e.SelfServicePasswordReset {
		if !slices.ContainsFunc(e.Policies, func(q string) bool { return strings.EqualFold(p, q) }) && (len(e.Policies) > 0 || !strings.EqualFold(p, "B2C_1_susi")) {
			return fmt.Errorf("self_service_password_reset: %q is not one of the policies", p)
		}
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
		if e.entra() {
			e.RefreshTokenLifetime = caddy.Duration(EntraRefreshTokenLifetime)
		}
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

// Cleanup releases the tenant's state.
func (e *Emulator) Cleanup() error {
	if e.poolID != "" {
		_, err := tenants.Delete(e.poolID)
		return err
	}
	return nil
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
