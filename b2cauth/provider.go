package b2cauth

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
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
	if time.Now().Before(p.retryAt) {
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
		p.retryAt = time.Now().Add(p.backoff)
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

// keySet is the provider's JWKS, kept in memory and fetched again when a
// token names an unknown key (at most a few times a minute) and once it is
// a day old (so a removed key stops being trusted). Signatures are checked
// by go-oidc (oidc.StaticKeySet), never here.
type keySet struct {
	url     string
	client  *http.Client
	algs    []string
	now     func() time.Time
	limiter *rate.Limiter

	mu       sync.Mutex
	keys     []publishedKey
	fetched  time.Time
	fetching *keyFetch // the fetch in flight, which every request that needs it waits for
	waiting  atomic.Int64
}

// keyFetch is a fetch of the keys in flight.
type keyFetch struct {
	done chan struct{}
	err  error
}

// VerifySignature implements oidc.KeySet.
func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	algs := make([]jose.SignatureAlgorithm, len(k.algs))
	for i, a := range k.algs {
		algs[i] = jose.SignatureAlgorithm(a)
	}
	jws, err := jose.ParseSignedCompact(jwt, algs)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("malformed jwt")
	}
	kid := jws.Signatures[0].Header.KeyID
	if k.stale() {
		if err := k.fetch(ctx, kid); err != nil && !errors.Is(err, errNoFetch) && len(k.matching(kid)) == 0 {
			return nil, fmt.Errorf("%w: fetching keys: %v", errUnavailable, err)
		}
	}
	pubs := k.matching(kid)
	if len(pubs) == 0 {
		if err := k.fetch(ctx, kid); err != nil && !errors.Is(err, errNoFetch) {
			return nil, fmt.Errorf("%w: fetching keys: %v", errUnavailable, err)
		}
		pubs = k.matching(kid)
	}
	if len(pubs) == 0 {
		return nil, fmt.Errorf("no key with kid %q", kid)
	}
	err = fmt.Errorf("no key with kid %q verifies the token", kid)
	for _, key := range pubs {
		payload, verr := (&oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{key.Key}}).VerifySignature(ctx, jwt)
		if verr != nil {
			err = verr
			continue
		}
		if !key.forIssuer(payload) {
			// Microsoft: with the tenant-independent metadata, a key whose
			// issuer names a tenant "should only be used when the iss claim
			// in the token matches the value exactly".
			err = fmt.Errorf("key %q belongs to issuer %q, not to the token's", key.KeyID, key.issuer)
			continue
		}
		return payload, nil
	}
	return nil, err
}

// publishedKey is a key of the JWKS, with the issuer Entra ID's JWKS may
// name for it (a tenant's, or the {tenantid} template for any tenant).
type publishedKey struct {
	jose.JSONWebKey
	issuer string
}

// forIssuer tells whether a verified token's iss may use this key: any
// when the key names no issuer or the template; else exactly its own.
func (k publishedKey) forIssuer(payload []byte) bool {
	if k.issuer == "" || strings.Contains(k.issuer, tenantPlaceholder) {
		return true
	}
	var c struct {
		Iss string `json:"iss"`
	}
	return json.Unmarshal(payload, &c) == nil && c.Iss == k.issuer
}

// matching are the keys a token with this kid may be signed with: the key
// with that ID or, for a token without a kid, every key.
func (k *keySet) matching(kid string) []publishedKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.matchingLocked(kid)
}

func (k *keySet) matchingLocked(kid string) []publishedKey {
	var keys []publishedKey
	for _, key := range k.keys {
		if kid == "" || key.KeyID == kid {
			keys = append(keys, key)
		}
	}
	return keys
}

// stale tells whether the keys were fetched over maxAge ago.
func (k *keySet) stale() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.staleLocked()
}

func (k *keySet) staleLocked() bool {
	return !k.fetched.IsZero() && k.now().Sub(k.fetched) > maxAge
}

// errNoFetch is a fetch the rate limit refused, with none in flight.
var errNoFetch = errors.New("keys fetched too recently")

// fetch fetches the keys again for a request that needs kid: it waits for
// the fetch in flight, or starts one when the rate limit allows, so that
// requests at a cold start or a key rotation wait for one fetch rather
// than fail; the wait is bounded by the fetch's own timeout and the
// request's context.
func (k *keySet) fetch(ctx context.Context, kid string) error {
	k.mu.Lock()
	f := k.fetching
	if f == nil {
		if len(k.matchingLocked(kid)) > 0 && !k.staleLocked() {
			k.mu.Unlock()
			return nil // another request's fetch brought it meanwhile
		}
		if !k.limiter.Allow() {
			k.mu.Unlock()
			return errNoFetch
		}
		f = &keyFetch{done: make(chan struct{})}
		k.fetching = f
		go func() {
			f.err = k.refresh(context.WithoutCancel(ctx))
			k.mu.Lock()
			k.fetching = nil
			k.mu.Unlock()
			close(f.done)
		}()
	}
	k.mu.Unlock()
	k.waiting.Add(1)
	defer k.waiting.Add(-1)
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (k *keySet) refresh(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	start := time.Now()
	err := getJSON(ctx, k.client, k.url, &set)
	countFetch("keys", start, err)
	if err != nil {
		return err
	}
	var keys []publishedKey
	for _, raw := range set.Keys {
		var key jose.JSONWebKey
		if json.Unmarshal(raw, &key) != nil || !key.IsPublic() || (key.Use != "" && key.Use != "sig") {
			continue // a key we cannot use is skipped, not fatal
		}
		var extra struct {
			Issuer string `json:"issuer"`
		}
		_ = json.Unmarshal(raw, &extra)
		keys = append(keys, publishedKey{JSONWebKey: key, issuer: extra.Issuer})
	}
	k.mu.Lock()
	k.keys, k.fetched = keys, k.now()
	k.mu.Unlock()
	return nil
}

// tokenResponse is a token endpoint's answer. Numbers may arrive as JSON
// numbers or strings, as Microsoft's documents disagree.
type tokenResponse struct {
	IDToken          string     `json:"id_token"`
	AccessToken      string     `json:"access_token"`
	RefreshToken     string     `json:"refresh_token"`
	ExpiresIn        flexNumber `json:"expires_in"`
	Error            string     `json:"error"`
	ErrorDescription string     `json:"error_description"`
	// A claims challenge (Conditional Access, authentication context) that
	// the next /authorize request must carry, with interaction_required.
	Claims string `json:"claims"`
}

// flexNumber is an integer sent as a number or as a string.
type flexNumber int64

func (n *flexNumber) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*n = 0
		return nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("not a number: %s", b)
	}
	*n = flexNumber(v)
	return nil
}

// redeem posts a grant to the token endpoint. It accepts an answer with an
// ID token and no access token, as B2C gives when no API scope was asked.
func (h *Handler) redeem(ctx context.Context, d *discovered, form url.Values) (*tokenResponse, error) {
	form.Set("client_id", h.ClientID)
	if h.credential != nil {
		if err := h.credential.Apply(ctx, form, d.meta.TokenEndpoint); err != nil {
			return nil, fmt.Errorf("%w: the app's credential: %v", errUnavailable, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.meta.TokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := h.httpClient.Do(req)
	countFetch("token", start, err)
	if err != nil {
		return nil, fmt.Errorf("%w: token endpoint: %v", errUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%w: token endpoint: %v", errUnavailable, err)
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		if resp.StatusCode >= 500 {
			return nil, fmt.Errorf("%w: token endpoint: HTTP %d", errUnavailable, resp.StatusCode)
		}
		return nil, fmt.Errorf("token endpoint: HTTP %d, not JSON", resp.StatusCode)
	}
	if tr.Error != "" || resp.StatusCode != http.StatusOK {
		if tr.Error == "" {
			tr.Error = "HTTP " + strconv.Itoa(resp.StatusCode)
		}
		return &tr, &providerError{Code: tr.Error, Description: tr.ErrorDescription, Claims: tr.Claims, Status: resp.StatusCode}
	}
	if tr.IDToken == "" {
		return nil, errors.New("token endpoint: no id_token in the answer")
	}
	return &tr, nil
}

// providerError is an OAuth error from the provider, by redirect or from
// the token endpoint.
type providerError struct {
	Code        string // the OAuth error
	Description string
	Claims      string // a claims challenge for the next /authorize
	Status      int    // the token endpoint's HTTP status; 0 from a redirect
}

func (e *providerError) Error() string {
	return "provider error " + e.Code + " " + b2cCode(e.Description)
}

// b2cCode extracts the code that starts a Microsoft error description:
// AADB2C… from B2C, AADSTS… from Entra ID and External ID.
func b2cCode(desc string) string {
	for _, prefix := range []string{"AADB2C", "AADSTS"} {
		i := strings.Index(desc, prefix)
		if i < 0 {
			continue
		}
		j := i + len(prefix)
		for j < len(desc) && desc[j] >= '0' && desc[j] <= '9' {
			j++
		}
		if j > i+len(prefix) {
			return desc[i:j]
		}
	}
	return ""
}

// discoverAtStart fetches the sign-in policy's metadata once Caddy runs, so
// that a wrong tenant, authority or policy is in the log at start (and the
// first user does not wait for it). Provision never touches the network.
func (h *Handler) discoverAtStart(ctx context.Context) {
	p, policy := h.provider(h.Policy)
	if _, err := p.get(ctx); err != nil && ctx.Err() == nil {
		h.logger.Error("identity provider metadata cannot be fetched; sign-ins fail until it can", zap.String("metadata", p.metadataURL), zap.String("policy", policy), zap.Error(err))
	}
}
