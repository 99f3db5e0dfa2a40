package b2cauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/credentials"
	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// errUnavailable marks a provider that cannot be reached now.
var errUnavailable = errors.New("identity provider unavailable")

// unavailableError is a failed discovery, with when it will be tried again.
type unavailableError struct {
	err     error
	retryAt time.Time
}

func (e *unavailableError) Error() string   { return errUnavailable.Error() + ": " + e.err.Error() }
func (e *unavailableError) Unwrap() []error { return []error{errUnavailable, e.err} }

// misconfiguredError is a provider that answers, but not with this
// configuration's metadata: an unknown tenant or user flow (HTTP 400/404,
// AADB2C90022), or a document the configuration cannot use. Retrying does
// not help; the configuration must change.
type misconfiguredError struct{ err error }

func (e *misconfiguredError) Error() string { return e.err.Error() }
func (e *misconfiguredError) Unwrap() error { return e.err }

// metadata is the part of an OpenID Connect discovery document we use.
type metadata struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	EndSessionEndpoint    string `json:"end_session_endpoint"`
	UserInfoEndpoint      string `json:"userinfo_endpoint"`
	// CloudInstanceName is published by Entra ID (and External ID) only.
	CloudInstanceName string   `json:"cloud_instance_name"`
	JWKSURI           string   `json:"jwks_uri"`
	SigningAlgs       []string `json:"id_token_signing_alg_values_supported"`
}

// asymmetricAlgs are the only signature algorithms ever accepted: never
// `none`, never HMAC (whose key would be the public key).
var asymmetricAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// provider is one policy's (or one issuer's) metadata, keys and verifiers,
// discovered lazily and kept. While discovery fails, it is retried with
// backoff and requests that need it fail fast.
type provider struct {
	metadataURL string
	static      *metadata // an issuer given with its keys: nothing to discover
	clientID    string
	tenants     []string // admitted tenants, for a template issuer
	client      *http.Client
	now         func() time.Time

	mu         sync.Mutex
	ready      *discovered
	lastErr    error
	retryAt    time.Time
	backoff    time.Duration
	fetching   chan struct{}
	renewing   bool      // a request is fetching fresh metadata for ready
	renewAfter time.Time // when ready is old enough to be fetched again
}

// discovered is a provider once its metadata is known.
type discovered struct {
	meta      metadata
	keys      *keySet
	verifiers *issuerVerifiers
}

const (
	minBackoff = time.Second
	maxBackoff = time.Minute
	clockSkew  = time.Minute
	// maxAge is how long metadata and keys are used before being fetched
	// again (Microsoft: check the keys every 24 hours), so that a key the
	// provider removed stops being trusted.
	maxAge = 24 * time.Hour
)

// get returns the provider's metadata, discovering it if needed.
func (p *provider) get(ctx context.Context) (*discovered, error) {
	p.mu.Lock()
	if p.ready != nil {
		d := p.ready
		if p.renewing || p.now().Before(p.renewAfter) {
			p.mu.Unlock()
			return d, nil
		}
		// Old metadata: this request fetches it again; others meanwhile,
		// and everyone if it fails, keep using what is known.
		p.renewing = true
		p.mu.Unlock()
		fresh, err := p.discover(ctx)
		p.mu.Lock()
		p.renewing = false
		if err == nil {
			p.ready, d = fresh, fresh
			p.renewAfter = p.now().Add(maxAge)
		} else {
			p.renewAfter = p.now().Add(maxBackoff)
		}
		p.mu.Unlock()
		return d, nil
	}
	if wait := p.fetching; wait != nil { // someone else is fetching
		p.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return p.result()
	}
	if p.now().Before(p.retryAt) {
		err := p.lastErr
		p.mu.Unlock()
		return nil, err
	}
	done := make(chan struct{})
	p.fetching = done
	p.mu.Unlock()

	d, err := p.discover(ctx)

	p.mu.Lock()
	p.fetching = nil
	if err != nil {
		p.backoff = min(max(p.backoff*2, minBackoff), maxBackoff)
		p.retryAt = p.now().Add(p.backoff)
		p.lastErr = &unavailableError{err: err, retryAt: p.retryAt}
	} else {
		p.ready, p.backoff, p.lastErr = d, 0, nil
		p.renewAfter = p.now().Add(maxAge)
	}
	p.mu.Unlock()
	close(done)
	return p.result()
}

func (p *provider) result() (*discovered, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ready != nil {
		return p.ready, nil
	}
	return nil, p.lastErr
}

// discover fetches and checks the metadata document. The issuer that tokens
// must carry is the document's own (B2C's differs from the discovery URL).
func (p *provider) discover(ctx context.Context) (*discovered, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var m metadata
	required := map[string]*string{"issuer": &m.Issuer, "authorization_endpoint": &m.AuthorizationEndpoint, "token_endpoint": &m.TokenEndpoint, "jwks_uri": &m.JWKSURI}
	source := p.metadataURL
	if p.static != nil {
		m, source = *p.static, p.static.JWKSURI // both configured by hand
		required = map[string]*string{"issuer": &m.Issuer, "jwks_uri": &m.JWKSURI}
	} else {
		start := time.Now()
		err := getJSON(ctx, p.client, p.metadataURL, &m)
		countFetch("metadata", start, err)
		var se *statusError
		if errors.As(err, &se) && se.status >= 400 && se.status < 500 {
			return nil, &misconfiguredError{err}
		}
		if err != nil {
			return nil, err
		}
	}
	base, _ := url.Parse(source)
	for name, v := range required {
		if err := checkEndpoint(*v, base.Scheme); err != nil {
			return nil, fmt.Errorf("metadata %s: %v", name, err)
		}
	}
	if m.EndSessionEndpoint != "" && checkEndpoint(m.EndSessionEndpoint, base.Scheme) != nil {
		m.EndSessionEndpoint = ""
	}
	if m.UserInfoEndpoint != "" && checkEndpoint(m.UserInfoEndpoint, base.Scheme) != nil {
		m.UserInfoEndpoint = ""
	}
	var algs []string
	for _, a := range m.SigningAlgs {
		for _, ok := range asymmetricAlgs {
			if a == ok {
				algs = append(algs, a)
			}
		}
	}
	if len(algs) == 0 {
		algs = []string{"RS256"}
	}
	keys := &keySet{url: m.JWKSURI, client: p.client, algs: algs, now: p.now, limiter: rate.NewLimiter(rate.Every(10*time.Second), 3)}
	// The verifiers' clock runs a little behind, which allows for skew on exp.
	skewedNow := func() time.Time { return p.now().Add(-clockSkew) }
	v := &issuerVerifiers{tenants: p.tenants, byTenant: map[string]*verifierPair{}, build: func(issuer string) *verifierPair {
		return &verifierPair{
			id:     oidc.NewVerifier(issuer, keys, &oidc.Config{ClientID: p.clientID, SupportedSigningAlgs: algs, Now: skewedNow}),
			access: oidc.NewVerifier(issuer, keys, &oidc.Config{SkipClientIDCheck: true, SupportedSigningAlgs: algs, Now: skewedNow}),
		}
	}}
	if strings.Contains(m.Issuer, tenantPlaceholder) {
		if len(p.tenants) == 0 {
			return nil, &misconfiguredError{fmt.Errorf("metadata issuer %q is a multi-tenant template: set tenants (tenant IDs, or *)", m.Issuer)}
		}
		v.template = m.Issuer
	} else {
		v.fixed = v.build(m.Issuer)
	}
	return &discovered{meta: m, keys: keys, verifiers: v}, nil
}

// checkEndpoint requires an absolute https URL (http only when the metadata
// itself came over http, as with a local emulator).
func checkEndpoint(v, scheme string) error {
	u, err := url.Parse(v)
	if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && scheme == "http")) {
		return fmt.Errorf("%q is not an absolute https URL", v)
	}
	return nil
}

// getJSON fetches a small JSON document.
func getJSON(ctx context.Context, client *http.Client, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return &statusError{url: u, status: resp.StatusCode, code: b2cCode(string(body))}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s: %v", u, err)
	}
	return nil
}

// statusError is a document answered with another status than 200, and
// the AADB2C or AADSTS code its body names, if any.
type statusError struct {
	url    string
	status int
	code   string
}

func (e *statusError) Error() string {
	if e.code != "" {
		return fmt.Sprintf("%s: HTTP %d, %s", e.url, e.status, e.code)
	}
	return fmt.Sprintf("%s: HTTP %d", e.url, e.status)
}

// idp is the identity provider as the handler speaks to it: the providers
// of its policies (discovery, keys, verifiers) and of additional issuers,
// the token endpoint with the app's credential, and UserInfo.
type idp struct {
	providers  map[string]*provider // by policy; "" in issuer mode
	extra      []*provider          // additional_issuers, discovered lazily
	policy     string               // the sign-in policy
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
}

// discoverAtStart fetches the sign-in policy's metadata once Caddy runs, so
// that a wrong tenant, authority or policy is in the log at start (and the
// first user does not wait for it). Provision never touches the network.
func (i *idp) discoverAtStart(ctx context.Context) {
	p, policy := i.provider(i.policy)
	if _, err := p.get(ctx); err != nil && ctx.Err() == nil {
		i.logger.Error("identity provider metadata cannot be fetched; sign-ins fail until it can", zap.String("metadata", p.metadataURL), zap.String("policy", policy), zap.Error(err))
	}
}
