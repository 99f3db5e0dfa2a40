// Package b2cauth is a Caddy HTTP handler that signs users in with Azure
// AD B2C (or any OpenID Connect provider) and hands their identity to the
// rest of Caddy.
//
// Where a signed-in request goes (a session cookie, its identity cached):
//
//	serve.go         ServeHTTP: the state the request's blocks share
//	                 (requeststate.go), strips client-sent identity headers,
//	                 answers /.auth/* (endpoints.go) and the redirect path
//	                 (signin.go)
//	serve.go         requestIdentity → session.go authenticate (bearer.go
//	                 for an Authorization header)
//	session.go       readSession: the cookie's chunks and its seal
//	                 (session package, sessionkeeper.go),
//	                 the identity cache (session.Cache), sign-outs
//	                 (signouts package), expiry and inactivity
//	session.go       keepSession: notes activity, renews near expiry
//	                 (refresh.go)
//	serve.go         the rules (rules.go, authorization.go), groups when
//	                 Graph must give them (groups.go)
//	assert.go        the identity assertion, with identity_assertion
//	identity.go      the placeholders; upstream.go hides the handler's
//	                 cookies and sets App Service's headers
//
// A sign-in: signin.go (startFlow, callback) over idp (idp.go,
// userinfo.go), the handler's view of the identity provider, whose
// protocol is the oidcprovider package (discovery, keys, verification, the
// token endpoint, Microsoft's errors), then sessionkeeper.go write. Sign-out: logout.go. Components the Handler
// holds: idp, sessionKeeper, groupSource (groups.go), assertions
// (assert.go), accessRules (authorization.go). The configuration:
// b2cauth.go (the module, Provision), validate.go, platform.go,
// caddyfile.go; caddy b2c …: command.go, configwalk.go and check.go.
package b2cauth

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddytls"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/assertion"
	"github.com/caddy-b2c/caddy-b2c/b2cauth/graph"
	"github.com/caddy-b2c/caddy-b2c/b2cauth/session"
	"github.com/caddy-b2c/caddy-b2c/b2cauth/signouts"
	"github.com/caddy-b2c/caddy-b2c/internal/site"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler protects what it handles with Azure AD B2C sign-in (or any OpenID
// Connect provider): browsers are sent through the provider's sign-in and
// come back with an encrypted session cookie; API clients may present a
// B2C access token as `Authorization: Bearer`. It serves, on every request
// it sees, the endpoints `/.auth/login` (with `/.auth/login/reset` and
// `/.auth/login/profile`), the redirect path (which also takes the
// provider's return from end_session), `/.auth/logout` (with
// `?everywhere=1` and `/.auth/logout/frontchannel`), `/.auth/me`,
// `/.auth/refresh` and, with identity_assertion, `/.auth/keys`.
//
// Sessions are cookies (or, with session_store storage, records in Caddy's
// storage behind a small cookie); a sign-out is recorded in Caddy's
// storage, so every Caddy sharing that storage refuses the session within
// revocation_sync.
//
// For a signed-in user it sets these placeholders:
//
//	{http.auth.user.id}       oid, else sub
//	{http.auth.user.<claim>}  every claim; arrays joined by commas
//	{http.auth.user.email}    email, else emails[0]
//	{http.auth.user.policy}   the user flow, from tfp or acr (B2C)
//	{http.auth.user.tid}      the tenant ID (External ID, Entra ID)
//	{http.auth.user.type}     user, or app for an app-only caller
//	{http.auth.user.roles}, {http.auth.user.groups}   comma-separated
//	{http.auth.b2c.access_token}, {http.auth.b2c.id_token},
//	{http.auth.b2c.access_token_expires}   the session's tokens
//	{http.auth.b2c.session_id}   the session's ID (what caddy b2c revoke --session takes)
//	{http.auth.b2c.assertion}    the identity assertion, with identity_assertion
//
// A claim the token lacks is empty, never the placeholder's text; without
// a user (an unprotected path, unauthenticated allow) they are all empty.
//
// Client-sent X-MS-CLIENT-PRINCIPAL* and X-MS-TOKEN-* headers are always
// removed; with easy_auth_headers, App Service's identity headers are set.
//
// tenant, authority, issuer, external_id, custom_domain, tenants,
// client_id, client_secret, client_certificate, client_assertion,
// cookie_secret, audience and public_url take {env.*} and {file.*}
// placeholders, resolved when the config is loaded; an unset one is an
// error that names the field.
type Handler struct {
	// The B2C tenant name: contoso means
	// https://contoso.b2clogin.com/contoso.onmicrosoft.com.
	Tenant string `json:"tenant,omitempty"`
	// A B2C-shaped base URL (a custom domain, the tenant GUID form, or a
	// local b2c_emulator); the metadata is at
	// <authority>/<policy>/v2.0/.well-known/openid-configuration.
	Authority string `json:"authority,omitempty"`
	// Any OpenID Connect issuer; the metadata is at
	// <issuer>/.well-known/openid-configuration. No policies.
	Issuer string `json:"issuer,omitempty"`
	// A Microsoft Entra External ID tenant by its subdomain: contoso means
	// https://contoso.ciamlogin.com/contoso.onmicrosoft.com/v2.0. No policies.
	ExternalID string `json:"external_id,omitempty"`
	// With external_id, the tenant's ID, which then names it in the path:
	// https://contoso.ciamlogin.com/<tenant ID>/v2.0.
	ExternalIDTenant string `json:"external_id_tenant,omitempty"`
	// With external_id: the tenant's custom URL domain (login.contoso.com),
	// where its metadata is https://<custom domain>/<tenant name or
	// ID>/v2.0/.well-known/openid-configuration.
	CustomDomain string `json:"custom_domain,omitempty"`
	// With a multi-tenant Entra ID issuer (…/organizations/v2.0 or
	// …/common/v2.0): the tenant IDs whose users are admitted, or * for
	// any. Each token's iss must be the issuer of its own tid.
	Tenants []string `json:"tenants,omitempty"`

	// The sign-up/sign-in user flow. Required with tenant or authority.
	Policy string `json:"policy,omitempty"`
	// The password reset user flow, started on AADB2C90118 and by
	// /.auth/login/reset. Optional.
	PasswordResetPolicy string `json:"password_reset_policy,omitempty"`
	// The profile editing user flow, started by /.auth/login/profile.
	ProfileEditPolicy string `json:"profile_edit_policy,omitempty"`

	// The application (client) ID. Required.
	ClientID string `json:"client_id,omitempty"`
	// The client secret. A Web app registration needs it (B2C answers
	// AADB2C90079 without it); a mobile and desktop registration is a
	// public client, without one, and relies on PKCE.
	ClientSecret string `json:"client_secret,omitempty"`
	// A certificate the app proves itself with, instead of a secret
	// (Entra ID and External ID): PEM files, {env.*} placeholders allowed.
	ClientCertificate *CertificateFiles `json:"client_certificate,omitempty"`
	// A federated token the app proves itself with (workload identity
	// federation, Entra ID and External ID): from a file, or from a
	// user-assigned managed identity.
	ClientAssertion *ClientAssertion `json:"client_assertion,omitempty"`
	// The scopes asked for. Default: openid offline_access with B2C;
	// openid profile email with issuer.
	Scopes []string `json:"scopes,omitempty"`
	// The callback path registered as the redirect URI's path.
	// Default: /.auth/login/b2c/callback.
	RedirectPath string `json:"redirect_path,omitempty"`
	// How the provider returns to the callback: query (default) or form_post.
	ResponseMode string `json:"response_mode,omitempty"`

	// Keys for the cookies: base64 of 32 bytes each. The first encrypts,
	// all decrypt. Default: a key generated once and kept in Caddy's
	// storage, shared by every Caddy that shares the storage.
	CookieSecret []string `json:"cookie_secret,omitempty"`
	// How long a session lasts after sign-in. Default: 8h.
	SessionLifetime caddy.Duration `json:"session_lifetime,omitempty"`
	// End a session unused for this long. Default: off.
	InactivityTimeout caddy.Duration `json:"inactivity_timeout,omitempty"`
	// Where sessions live: cookie (default: sealed in the cookie, nothing
	// kept server-side) or storage (in Caddy's storage, shared by every
	// instance that shares it; the cookie holds only the key to them).
	SessionStore string `json:"session_store,omitempty"`
	// The tokens a session keeps: any of id, access, refresh, or none.
	// Default: all three. Without id, the ID token's claims are kept
	// instead of the token; without access or refresh, the token
	// placeholders, App Service's token headers and renewal go without.
	SessionTokens []string `json:"session_tokens,omitempty"`

	// Who may in: any one rule must match. Default: every signed-in user.
	Allow []Rule `json:"allow,omitempty"`
	// Who may not: a matching rule refuses, whatever allow says.
	Deny []Rule `json:"deny,omitempty"`
	// What happens to a request without a user: redirect (to sign in), 401,
	// or allow (let it through anonymously). Default: redirect for browser
	// navigations, 401 for API and XHR requests.
	Unauthenticated string `json:"unauthenticated,omitempty"`
	// The accepted `aud` of bearer access tokens. Default: the client ID.
	Audience []string `json:"audience,omitempty"`
	// Scopes a bearer token must carry, every one, in `scp`: a user's
	// delegated permissions (and, on B2C, an app-only caller's application
	// permissions).
	RequireScopes []string `json:"require_scopes,omitempty"`
	// App roles a bearer token must carry, every one, in `roles`: an
	// application permission on Entra ID and External ID. A token passes
	// when it satisfies require_scopes or require_roles.
	RequireRoles []string `json:"require_roles,omitempty"`
	// Step-up (stepup.go): what this block asks of a signed-in user beyond
	// the sign-in. Entra ID's Conditional Access authentication contexts
	// (c1…c99), every one in the token's acrs; a sign-in no older than
	// this; a B2C user flow or custom policy that proved the session (any
	// one). A session that lacks one goes through the provider again and
	// comes back upgraded; a bearer token gets a challenge.
	RequireAuthContext  []string       `json:"require_auth_context,omitempty"`
	RequireRecentSignin caddy.Duration `json:"require_recent_signin,omitempty"`
	RequirePolicy       []string       `json:"require_policy,omitempty"`
	// Other issuers whose bearer access tokens are accepted too: the other
	// host during a B2C custom-domain migration, or Entra ID's v1.0 access
	// tokens (iss https://sts.windows.net/<tenant ID>/, an api:// audience
	// that audience must list), which an API gets unless its manifest sets
	// accessTokenAcceptedVersion to 2.
	AdditionalIssuers []AdditionalIssuer `json:"additional_issuers,omitempty"`
	// What a CORS preflight gets: authenticate (default: it is a request
	// like any other, so an anonymous one gets 401) or pass (a real
	// preflight — OPTIONS with Origin and Access-Control-Request-Method, no
	// Authorization, no body — goes to the next handler unauthenticated,
	// without a body or a method-override header, so that the app or a
	// header directive can answer it). Opt-in, as in oauth2-proxy
	// (--skip-auth-preflight) and Pomerium (cors_allow_preflight): whatever
	// answers OPTIONS behind b2c_auth answers it to anyone.
	CORSPreflight string `json:"cors_preflight,omitempty"`
	// Set App Service's X-MS-CLIENT-PRINCIPAL, -ID, -NAME and -IDP request
	// headers for upstream handlers.
	EasyAuthHeaders bool `json:"easy_auth_headers,omitempty"`
	// Let the social provider's access token that a user flow may pass
	// through (the idp_access_token claim) reach placeholders, headers and
	// /.auth/me. Default: it is removed.
	ExposeIDPAccessToken bool `json:"expose_idp_access_token,omitempty"`

	// Where users' groups come from: token (the groups claim, and Microsoft
	// Graph when the token carries Entra's overage indicator instead) or
	// graph (always Microsoft Graph: Azure AD B2C's tokens carry none).
	// Graph needs the app's credentials and the application permissions
	// User.Read.All and GroupMember.Read.All. Default: token.
	Groups string `json:"groups,omitempty"`
	// Which groups Graph gives: security (the security groups, through
	// getMemberGroups, which every platform answers; the groups the rules
	// name, whatever their type, through checkMemberGroups when they name
	// them by ID) or all (every group type, Microsoft 365 and distribution
	// groups too, through transitiveMemberOf). Default: security.
	GraphGroups string `json:"graph_groups,omitempty"`
	// Which groups from Graph a session keeps: named (those the allow and
	// deny rules name) or all (up to 200). Default: named.
	KeepGroups string `json:"keep_groups,omitempty"`
	// Microsoft Graph's root. Default: on Azure AD B2C
	// https://graph.microsoft.com; elsewhere https:// and the provider
	// metadata's msgraph_host, else the Graph of the issuer's cloud
	// (https://graph.microsoft.us, https://microsoftgraph.chinacloudapi.cn).
	GraphEndpoint string `json:"graph_endpoint,omitempty"`
	// Where the app gets its Graph token (client credentials, at
	// <graph_login>/<tenant ID>/oauth2/v2.0/token — on B2C too: user flows
	// cannot issue one). Default: on Azure AD B2C
	// https://login.microsoftonline.com; elsewhere the issuer's own host.
	GraphLogin string `json:"graph_login,omitempty"`

	// Sign the user's identity for upstreams: the request header that
	// carries an ES256 JWT assertion (iss the site's origin, aud, sub and
	// the user's claims, valid 5 minutes, a kid), verifiable with the keys
	// at /.auth/keys, which live in Caddy's storage and rotate. Client-sent
	// copies of the header are removed. Default: off; the Caddyfile's
	// `identity_assertion` without a name uses X-B2C-Identity-Assertion.
	IdentityAssertion string `json:"identity_assertion,omitempty"`
	// The assertion's aud. Default: the site's origin.
	AssertionAudience []string `json:"assertion_audience,omitempty"`

	// Renew the session's tokens with the refresh token when a request
	// comes within 5 minutes of their expiry: auto or off. Default: auto
	// when the scopes include offline_access.
	Refresh string `json:"refresh,omitempty"`

	// Defaults for the authorize request's domain_hint (a social or
	// federated provider to go to at once) and ui_locales (the pages'
	// language); /.auth/login?domain_hint=…&ui_locales=… overrides them.
	DomainHint string `json:"domain_hint,omitempty"`
	UILocales  string `json:"ui_locales,omitempty"`

	// How often sign-outs recorded by other instances are read from
	// Caddy's storage. Default: 10s.
	RevocationSync caddy.Duration `json:"revocation_sync,omitempty"`
	// The certificate authorities trusted for the identity provider's
	// HTTPS (metadata, keys, token and UserInfo endpoints), from one of
	// Caddy's CA pool sources, as reverse_proxy's tls_trust_pool: e.g. the
	// local PKI's root (pki_root local) for an emulator on tls internal, or
	// a file with a TLS-inspecting proxy's root. It replaces the system's
	// roots. Default: the system's roots.
	TrustPoolRaw json.RawMessage `json:"tls_trust_pool,omitempty" caddy:"namespace=tls.ca_pool.source inline_key=provider"`

	// The site's public origin (https://www.example.com), for redirect URIs
	// when Caddy sits behind a proxy that terminates TLS. Default: the
	// request's scheme and host, or X-Forwarded-Proto and X-Forwarded-Host
	// when the request comes from one of the server's trusted_proxies.
	PublicURL string `json:"public_url,omitempty"`

	// Which requests must be signed in; the others only get the user's
	// placeholders when there is one. Default: every request. (The
	// Caddyfile puts the directive's matcher here, so the /.auth endpoints
	// stay reachable.)
	ProtectRaw caddy.ModuleMap `json:"protect,omitempty" caddy:"namespace=http.matchers"`

	platform    platform // which kind of provider, from the configuration
	protect     caddyhttp.MatcherSet
	codec       *session.Codec
	purpose     string // the sessions' provider and client: what a block shares a session identity by
	idp         *idp   // the identity provider: discovery, keys, tokens, UserInfo
	httpClient  *http.Client
	now         func() time.Time
	cache       *session.Cache[*identity]
	sessions    *sessionKeeper // where sessions are sealed and kept
	bearerCache *session.Cache[*identity]
	autoRefresh bool
	renewals    *renewals
	groups      *groupSource // the groups tokens cannot hold, from Microsoft Graph
	stepUp      stepUp       // what this block asks beyond a sign-in
	assertions  *assertions  // identity_assertion's signer
	signouts    *signouts.Store
	signoutsKey string            // for signouts.Release
	storage     certmagic.Storage // Caddy's; tests set their own
	logger      *zap.Logger
	ctx         caddy.Context
	siteHosts   *site.Hosts // the site's host names, by server
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.b2c_auth",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision resolves placeholders, sets defaults and builds the handler's
// state. It never touches the network: the provider is discovered on the
// first request that needs it. It does read and write Caddy's storage (the
// generated cookie key, the assertion keys, the session store's marker),
// also when Caddy only validates a config.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.ctx, h.logger, h.siteHosts = ctx, ctx.Logger(), new(site.Hosts)
	repl := caddy.NewReplacer()
	resolve := func(field, v string) (string, error) {
		out, err := repl.ReplaceOrErr(v, true, true)
		if err != nil {
			return "", fmt.Errorf("%s: a placeholder is unset or unknown: %v", field, err)
		}
		return out, nil
	}
	var err error
	if err := h.resolvePlaceholders(resolve); err != nil {
		return err
	}
	if err := h.checkConfig(); err != nil {
		return err
	}
	credential, err := h.buildCredential(resolve)
	if err != nil {
		return err
	}
	var keys [][]byte
	for i, s := range h.CookieSecret {
		v, err := resolve("cookie_secret", s)
		if err != nil {
			return err
		}
		k, err := session.DecodeSecret(v)
		if err != nil {
			return fmt.Errorf("cookie_secret: secret %d %v", i+1, err)
		}
		keys = append(keys, k)
	}
	if h.storage == nil {
		h.storage = ctx.Storage()
	}
	if len(keys) == 0 {
		k, err := session.StoredKey(ctx, h.storage)
		if err != nil {
			return fmt.Errorf("cookie_secret: none given, and the key in Caddy's storage could not be loaded or made: %v", err)
		}
		keys = append(keys, k)
	}
	if h.codec, err = session.NewCodec(keys); err != nil {
		return fmt.Errorf("cookie_secret: %v", err)
	}

	if h.RedirectPath == "" {
		h.RedirectPath = defaultRedirectPath
	}
	if h.ResponseMode == "" {
		h.ResponseMode = "query"
	}
	h.platform = h.platformOf()
	if len(h.Scopes) == 0 {
		switch {
		case h.platform.issuer:
			h.Scopes = []string{"openid", "profile", "email"}
		case h.platform.externalID:
			h.Scopes = []string{"openid", "profile", "email", "offline_access"}
		default:
			h.Scopes = []string{"openid", "offline_access"}
		}
	}
	if h.SessionLifetime == 0 {
		h.SessionLifetime = caddy.Duration(defaultSessionLifetime)
	}
	if len(h.Audience) == 0 {
		h.Audience = []string{h.ClientID}
	}
	if h.ProtectRaw != nil {
		mods, err := ctx.LoadModule(h, "ProtectRaw")
		if err != nil {
			return fmt.Errorf("protect: %v", err)
		}
		for _, m := range mods.(map[string]any) {
			h.protect = append(h.protect, m)
		}
	}
	if h.httpClient == nil {
		transport := http.DefaultTransport.(*http.Transport).Clone()
		if h.TrustPoolRaw != nil {
			mod, err := ctx.LoadModule(h, "TrustPoolRaw")
			if err != nil {
				return fmt.Errorf("tls_trust_pool: %v", err)
			}
			ca, ok := mod.(caddytls.CA)
			if !ok {
				return fmt.Errorf("tls_trust_pool: %T is not a CA pool source", mod)
			}
			transport.TLSClientConfig = &tls.Config{RootCAs: ca.CertPool(), MinVersion: tls.VersionTLS12}
		}
		h.httpClient = &http.Client{Transport: transport, Timeout: 15 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if h.now == nil {
		h.now = time.Now
	}

	// A session is bound to its provider and client: another configuration's
	// cookie, even sealed with the same key, does not open here.
	sum := sha256.Sum256([]byte(h.Tenant + "|" + h.Authority + "|" + h.Issuer + "|" + h.ExternalID + "|" + h.ClientID))
	app := hex.EncodeToString(sum[:8])
	purpose := "b2c_session|" + app
	h.purpose = purpose

	h.idp = h.newIDP(credential)
	h.stepUp = stepUp{contexts: h.RequireAuthContext, recent: time.Duration(h.RequireRecentSignin), policies: h.RequirePolicy}
	h.cache = session.NewCache[*identity](4096)
	h.sessions = &sessionKeeper{codec: h.codec, purpose: purpose, store: &session.Store{Storage: h.storage}, inStorage: h.SessionStore == "storage",
		lifetime: time.Duration(h.SessionLifetime), tokens: h.SessionTokens, cache: h.cache, storage: h.storage, now: func() time.Time { return h.now() }, logger: h.logger}
	if err := h.sessions.noteStore(ctx, app); err != nil {
		return fmt.Errorf("session_store: Caddy's storage: %v", err)
	}
	h.bearerCache = session.NewCache[*identity](4096)

	h.autoRefresh = h.Refresh == "auto" || (h.Refresh == "" && slices.Contains(h.Scopes, "offline_access"))
	h.groups = &groupSource{always: h.Groups == "graph", keepAll: h.KeepGroups == "all", allow: h.Allow, deny: h.Deny,
		bearer: &bearerGroups{entries: map[string]cachedGroups{}}, now: func() time.Time { return h.now() }, logger: h.logger}
	if h.Groups == "graph" || namesGroups(h.Allow, h.Deny) || h.KeepGroups == "all" {
		if credential != nil {
			h.groups.graph = &graph.Client{Cloud: h.graphHosts, AllTypes: h.GraphGroups == "all", Named: namedGroups(h.KeepGroups, h.Allow, h.Deny),
				ClientID: h.ClientID, Credential: credential, HTTP: h.httpClient, MaxWait: 10 * time.Second, Now: func() time.Time { return h.now() }}
		} else if h.Groups == "graph" {
			return errors.New("groups: graph needs the app's credentials (client_secret, client_certificate or client_assertion) to get its Microsoft Graph token")
		}
	}
	h.renewals = &renewals{recent: map[string]recentRenewal{}, failing: map[string]failedRenewal{}}

	registerMetrics(ctx.GetMetricsRegistry())
	h.warnAtStart()
	if h.IdentityAssertion != "" {
		ring, err := assertion.Open(ctx, h.storage, app, h.now)
		if err != nil {
			return fmt.Errorf("identity_assertion: its keys in Caddy's storage: %v", err)
		}
		h.assertions = &assertions{ring: ring, header: h.IdentityAssertion, audience: h.AssertionAudience, names: h.siteNames, origin: h.assertionOrigin,
			now: func() time.Time { return h.now() }, logger: h.logger}
	}
	if h.RevocationSync == 0 {
		h.RevocationSync = caddy.Duration(signouts.DefaultSync)
	}
	if h.signouts, h.signoutsKey, err = signouts.Open(h.storage, time.Duration(h.RevocationSync), h.logger); err != nil {
		return fmt.Errorf("revocation_sync: %v", err)
	}
	h.whenRunning(ctx)
	sessionLifetimes.Store(h, time.Duration(h.SessionLifetime))
	return nil
}

// Cleanup releases the shared revocation list; the last user stops its sync.
func (h *Handler) Cleanup() error {
	sessionLifetimes.Delete(h)
	if h.signoutsKey == "" {
		return nil
	}
	return signouts.Release(h.signoutsKey)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
