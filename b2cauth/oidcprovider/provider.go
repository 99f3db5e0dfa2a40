// Package oidcprovider speaks the OpenID Connect provider protocol as
// Azure AD B2C, Entra External ID, Entra ID and other providers serve it:
// discovery (with backoff, and the issuer from the document, not the
// discovery URL), signing keys (per-key issuers, fetched again on an
// unknown kid and once a day, one fetch in flight), template issuers and
// admitted tenants, ID and access token verification through go-oidc (with
// the checks it leaves to its caller), the token endpoint with the app's
// credential, and Microsoft's error codes and what they mean.
package oidcprovider

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

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/time/rate"
)

// ErrUnavailable marks a provider that cannot be reached now.
var ErrUnavailable = errors.New("identity provider unavailable")

// UnavailableError is a failed discovery, with when it will be tried again.
type UnavailableError struct {
	err     error
	RetryAt time.Time // when discovery is tried again
}

func (e *UnavailableError) Error() string   { return ErrUnavailable.Error() + ": " + e.err.Error() }
func (e *UnavailableError) Unwrap() []error { return []error{ErrUnavailable, e.err} }

// MisconfiguredError is a provider that answers, but not with this
// configuration's metadata: an unknown tenant or user flow (HTTP 400/404,
// AADB2C90022), or a document the configuration cannot use. Retrying does
// not help; the configuration must change.
type MisconfiguredError struct{ err error }

func (e *MisconfiguredError) Error() string { return e.err.Error() }
func (e *MisconfiguredError) Unwrap() error { return e.err }

// Metadata is the part of an OpenID Connect discovery document we use.
type Metadata struct {
	Issuer                string `json:"issuer"`
	AuthorizationEndpoint string `json:"authorization_endpoint"`
	TokenEndpoint         string `json:"token_endpoint"`
	EndSessionEndpoint    string `json:"end_session_endpoint"`
	UserInfoEndpoint      string `json:"userinfo_endpoint"`
	// CloudInstanceName is published by Entra ID (and External ID) only.
	CloudInstanceName string `json:"cloud_instance_name"`
	// MSGraphHost is Microsoft Graph's host for this cloud (Entra ID's
	// metadata has it; External ID's does not).
	MSGraphHost string   `json:"msgraph_host"`
	JWKSURI     string   `json:"jwks_uri"`
	SigningAlgs []string `json:"id_token_signing_alg_values_supported"`
}

// asymmetricAlgs are the only signature algorithms ever accepted: never
// `none`, never HMAC (whose key would be the public key).
var asymmetricAlgs = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Provider is one policy's (or one issuer's) metadata, keys and verifiers,
// discovered lazily and kept. While discovery fails, it is retried with
// backoff and requests that need it fail fast.
type Provider struct {
	MetadataURL string
	Static      *Metadata // an issuer given with its keys: nothing to discover
	ClientID    string
	Tenants     []string // admitted tenants, for a template issuer
	HTTP        *http.Client
	Now         func() time.Time
	// Observe is told of each request to the provider (metadata, keys,
	// token, userinfo), when it started and how it ended; may be nil.
	Observe func(kind string, start time.Time, err error)

	mu         sync.Mutex
	ready      *Discovered
	lastErr    error
	retryAt    time.Time
	backoff    time.Duration
	fetching   chan struct{}
	renewing   bool      // a request is fetching fresh metadata for ready
	renewAfter time.Time // when ready is old enough to be fetched again
}

// Discovered is a provider once its metadata is known.
type Discovered struct {
	provider  *Provider // whose it is: the client, the credential's endpoint
	Meta      Metadata
	keys      *keySet
	verifiers *issuerVerifiers
}

const (
	minBackoff = time.Second
	maxBackoff = time.Minute
	ClockSkew  = time.Minute
	// MaxAge is how long metadata and keys are used before being fetched
	// again (Microsoft: check the keys every 24 hours), so that a key the
	// provider removed stops being trusted.
	MaxAge = 24 * time.Hour
)

// observe tells Observe of a request to the provider.
func (p *Provider) observe(kind string, start time.Time, err error) {
	if p.Observe != nil {
		p.Observe(kind, start, err)
	}
}

// Get returns the provider's metadata, discovering it if needed.
func (p *Provider) Get(ctx context.Context) (*Discovered, error) {
	p.mu.Lock()
	if p.ready != nil {
		d := p.ready
		if p.renewing || p.Now().Before(p.renewAfter) {
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
			p.renewAfter = p.Now().Add(MaxAge)
		} else {
			p.renewAfter = p.Now().Add(maxBackoff)
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
	if p.Now().Before(p.retryAt) {
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
		p.retryAt = p.Now().Add(p.backoff)
		p.lastErr = &UnavailableError{err: err, RetryAt: p.retryAt}
	} else {
		p.ready, p.backoff, p.lastErr = d, 0, nil
		p.renewAfter = p.Now().Add(MaxAge)
	}
	p.mu.Unlock()
	close(done)
	return p.result()
}

func (p *Provider) result() (*Discovered, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ready != nil {
		return p.ready, nil
	}
	return nil, p.lastErr
}

// discover fetches and checks the metadata document. The issuer that tokens
// must carry is the document's own (B2C's differs from the discovery URL).
func (p *Provider) discover(ctx context.Context) (*Discovered, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var m Metadata
	required := map[string]*string{"issuer": &m.Issuer, "authorization_endpoint": &m.AuthorizationEndpoint, "token_endpoint": &m.TokenEndpoint, "jwks_uri": &m.JWKSURI}
	source := p.MetadataURL
	if p.Static != nil {
		m, source = *p.Static, p.Static.JWKSURI // both configured by hand
		required = map[string]*string{"issuer": &m.Issuer, "jwks_uri": &m.JWKSURI}
	} else {
		start := time.Now()
		_, err := GetJSON(ctx, p.HTTP, p.MetadataURL, &m)
		p.observe("metadata", start, err)
		var se *StatusError
		if errors.As(err, &se) && se.status >= 400 && se.status < 500 {
			return nil, &MisconfiguredError{err}
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
	keys := &keySet{observe: p.observe, url: m.JWKSURI, client: p.HTTP, algs: algs, now: p.Now, limiter: rate.NewLimiter(rate.Every(10*time.Second), 3)}
	// The verifiers' clock runs a little behind, which allows for skew on exp.
	skewedNow := func() time.Time { return p.Now().Add(-ClockSkew) }
	v := &issuerVerifiers{tenants: p.Tenants, byTenant: map[string]*verifierPair{}, build: func(issuer string) *verifierPair {
		return &verifierPair{
			id:     oidc.NewVerifier(issuer, keys, &oidc.Config{ClientID: p.ClientID, SupportedSigningAlgs: algs, Now: skewedNow}),
			access: oidc.NewVerifier(issuer, keys, &oidc.Config{SkipClientIDCheck: true, SupportedSigningAlgs: algs, Now: skewedNow}),
		}
	}}
	if strings.Contains(m.Issuer, TenantPlaceholder) {
		if len(p.Tenants) == 0 {
			return nil, &MisconfiguredError{fmt.Errorf("metadata issuer %q is a multi-tenant template: set tenants (tenant IDs, or *)", m.Issuer)}
		}
		v.template = m.Issuer
	} else {
		v.fixed = v.build(m.Issuer)
	}
	return &Discovered{provider: p, Meta: m, keys: keys, verifiers: v}, nil
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

// GetJSON fetches a JSON document (metadata, keys): the one GET of the
// provider's documents, for the handler and caddy b2c check alike. It
// returns the answer's Date (zero without one), by which a caller may
// compare clocks.
func GetJSON(ctx context.Context, client *http.Client, u string, v any) (time.Time, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return time.Time{}, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return time.Time{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return time.Time{}, &StatusError{url: u, status: resp.StatusCode, code: Code(string(body))}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return time.Time{}, err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return time.Time{}, fmt.Errorf("%s: %v", u, err)
	}
	date, _ := http.ParseTime(resp.Header.Get("Date"))
	return date, nil
}

// StatusError is a document answered with another status than 200, and
// the AADB2C or AADSTS code its body names, if any.
type StatusError struct {
	url    string
	status int
	code   string
}

func (e *StatusError) Error() string {
	if e.code != "" {
		return fmt.Sprintf("%s: HTTP %d, %s", e.url, e.status, e.code)
	}
	return fmt.Sprintf("%s: HTTP %d", e.url, e.status)
}
