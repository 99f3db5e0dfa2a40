// Package graph reads a user's group memberships from Microsoft Graph with
// an app-only token, for the groups a token cannot carry: Entra ID's
// overage (past 200 groups a token has _claim_names/_claim_sources instead
// of groups, and that source is the retired Azure AD Graph) and Azure AD
// B2C, whose tokens have no groups claim.
//
// It asks only what every platform answers — Graph's advanced queries (an
// OData cast such as transitiveMemberOf/microsoft.graph.group) are not
// available in Azure AD B2C tenants: getMemberGroups with
// securityEnabledOnly (the security groups, transitively; at most 11,000),
// checkMemberGroups for the groups a configuration names (20 a call), or
// transitiveMemberOf, paged, keeping its group entries (every group type).
// Each wants the application permissions User.Read.All and
// GroupMember.Read.All, with admin consent.
package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/credentials"
	"github.com/caddy-b2c/caddy-b2c/b2cauth/oidcprovider"
	"golang.org/x/sync/singleflight"
)

// Client reads group memberships. Its token comes from the tenant's own
// token endpoint (on B2C too: user flows cannot issue Graph tokens), with
// the client-credentials grant.
//
// Graph throttles per app and tenant, so a caller must not be able to
// multiply the calls: one lookup is in flight per user (concurrent callers
// wait for it), one token fetch per tenant, at most MaxLookups at once; a
// failure is remembered per user until it may have changed, and paging
// stays on Graph's own host within MaxGroups.
type Client struct {
	// Endpoint is Microsoft Graph's root: https://graph.microsoft.com, or a
	// national cloud's (https://graph.microsoft.us, https://microsoftgraph.chinacloudapi.cn).
	Endpoint string
	// Login is the identity platform's host for Graph tokens:
	// https://login.microsoftonline.com, or a national cloud's.
	Login string
	// Cloud, when set, gives Login and Endpoint instead of the fields (from
	// the provider's metadata, found when first needed).
	Cloud func(ctx context.Context) (login, endpoint string, err error)
	// AllTypes reads every group type (Microsoft 365 and distribution
	// groups too) through transitiveMemberOf; default: security groups
	// through getMemberGroups.
	AllTypes bool
	// Named, when set, are the only groups a lookup asks about
	// (checkMemberGroups): the answer is those the user is a member of.
	Named []string
	// The application's credentials.
	ClientID string
	// Credential authenticates the app at the token endpoint.
	Credential credentials.Credential
	// HTTP is the client requests go through.
	HTTP *http.Client
	// MaxWait bounds the time one lookup may take, retries included.
	MaxWait time.Duration
	// Now is the clock failures are remembered by. Default: time.Now.
	Now func() time.Time

	mu       sync.Mutex
	tokens   map[string]cachedToken // by tenant
	failures map[string]failure     // by tenant/user
	flights  singleflight.Group     // "user:<tenant>/<user>" and "token:<tenant>"
	slotsMu  sync.Once
	slots    chan struct{}
	joined   atomic.Int64 // callers that asked for a lookup (tests wait on it)
}

// Bounds on what one user, or all of them, can make the client do.
const (
	// MaxLookups is how many lookups one client runs at once; others wait.
	MaxLookups = 8
	// MaxGroups is how many group IDs one lookup reads: far above the 200
	// a session keeps, far below what a hostile Graph could send. (Graph's
	// getMemberGroups answers at most 11,000, else refuses.)
	MaxGroups = 5000
	// checkBatch is how many groups one checkMemberGroups call asks about.
	checkBatch = 20
	// maxPage is the most bytes of one page read (999 IDs are ~80 KB).
	maxPage = 512 << 10
	// maxTries is how many times one lookup asks a throttled Graph.
	maxTries = 2
	// retryFloor is the least wait between two tries, whatever
	// Retry-After says (Graph's throttling guidance: back off).
	retryFloor = time.Second
	// ThrottledFor is the least time a user's throttled or failed lookup is
	// not asked again, whatever Retry-After says.
	ThrottledFor = 5 * time.Second
	// RefusedFor is how long a refusal (403, 404, a refused credential) is
	// remembered: until a grant or a fix may have changed it.
	RefusedFor = time.Minute
)

type cachedToken struct {
	value   string
	expires time.Time
}

// failure is a lookup's error, and until when it stands.
type failure struct {
	err   error
	until time.Time
}

// Error is Graph's (or the token endpoint's) refusal, with what to fix.
type Error struct {
	Status     int
	Code       string // Graph's error code, or the OAuth error
	Hint       string
	RetryAfter time.Duration // Graph's Retry-After, on 429 and 503
}

func (e *Error) Error() string {
	return fmt.Sprintf("microsoft graph: HTTP %d %s: %s", e.Status, e.Code, e.Hint)
}

// throttled tells a 429 or 503.
func (e *Error) throttled() bool {
	return e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable
}

// hints say what to fix for Graph's usual refusals.
func hint(code string) string {
	switch code {
	case "Authorization_RequestDenied":
		return "grant the app the application permissions User.Read.All and GroupMember.Read.All on Microsoft Graph, with admin consent"
	case "InvalidAuthenticationToken":
		return "the Graph token was refused: check graph_endpoint and graph_login (the same cloud)"
	case "Directory_ResultSizeLimitExceeded":
		return "the user is in more than 11,000 security groups, more than getMemberGroups answers: name the groups in allow/deny rules (keep_groups named), or set graph_groups all"
	case "Request_UnsupportedQuery":
		return "Graph refused the query (advanced queries are not available in Azure AD B2C tenants)"
	case "invalid_client", "unauthorized_client":
		return "the app's credentials were refused by the token endpoint for Graph: check client_id and client_secret"
	case "Request_ResourceNotFound":
		return "no such user in the tenant"
	case "TooManyRequests":
		return "throttled by Graph"
	}
	return "unexpected answer"
}

// MemberGroups lists the object IDs of the groups a user (by object ID) is
// a member of, directly or not — the security groups (getMemberGroups),
// those of Named (checkMemberGroups), or with AllTypes every group
// (transitiveMemberOf, paged on Graph's host only) — up to MaxGroups,
// honouring Retry-After on 429, within MaxWait. Concurrent calls for one user share
// one lookup; a failed lookup answers again, without asking Graph, until
// Retry-After (at least ThrottledFor) or RefusedFor has passed.
func (c *Client) MemberGroups(ctx context.Context, tenant, userID string) ([]string, error) {
	key := tenant + "/" + userID
	if err := c.remembered(key); err != nil {
		return nil, err
	}
	c.joined.Add(1)
	ch := c.flights.DoChan("user:"+key, func() (any, error) {
		// The lookup serves every caller waiting for it: one leaving does
		// not cancel it; MaxWait bounds it.
		lookupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cmpDuration(c.MaxWait, 10*time.Second))
		defer cancel()
		ids, err := c.lookup(lookupCtx, tenant, userID)
		if err != nil {
			c.remember(key, err)
		}
		return ids, err
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return slices.Clone(res.Val.([]string)), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// lookup reads a user's groups from Graph, in one of the client's slots.
func (c *Client) lookup(ctx context.Context, tenant, userID string) ([]string, error) {
	c.slotsMu.Do(func() { c.slots = make(chan struct{}, MaxLookups) })
	select {
	case c.slots <- struct{}{}:
		defer func() { <-c.slots }()
	case <-ctx.Done():
		return nil, fmt.Errorf("microsoft graph: %d lookups in flight, and the time allowed ran out", MaxLookups)
	}
	login, endpoint, err := c.hosts(ctx)
	if err != nil {
		return nil, err
	}
	token, err := c.token(ctx, login, endpoint, tenant)
	if err != nil {
		return nil, err
	}
	user := strings.TrimSuffix(endpoint, "/") + "/v1.0/users/" + url.PathEscape(userID)
	switch {
	case len(c.Named) > 0:
		return c.checkMemberGroups(ctx, user, token)
	case c.AllTypes:
		return c.transitiveGroups(ctx, endpoint, user, token)
	}
	var answer struct {
		Value []string `json:"value"`
	}
	if err := c.call(ctx, http.MethodPost, user+"/getMemberGroups", token, `{"securityEnabledOnly":true}`, &answer); err != nil {
		return nil, err
	}
	return answer.Value[:min(len(answer.Value), MaxGroups)], nil
}

// hosts are the login host and Graph's root of the client's cloud.
func (c *Client) hosts(ctx context.Context) (login, endpoint string, err error) {
	if c.Cloud == nil {
		return c.Login, c.Endpoint, nil
	}
	return c.Cloud(ctx)
}

// checkMemberGroups asks which of the named groups the user is a member
// of, checkBatch at a time.
func (c *Client) checkMemberGroups(ctx context.Context, user, token string) ([]string, error) {
	var ids []string
	for batch := range slices.Chunk(c.Named, checkBatch) {
		body, err := json.Marshal(map[string][]string{"groupIds": batch})
		if err != nil {
			return nil, err
		}
		var answer struct {
			Value []string `json:"value"`
		}
		if err := c.call(ctx, http.MethodPost, user+"/checkMemberGroups", token, string(body), &answer); err != nil {
			return nil, err
		}
		for _, id := range answer.Value { // only what was asked
			if slices.Contains(batch, id) && !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	return ids, nil
}

// transitiveGroups lists the user's memberships of every kind, paged
// (@odata.nextLink, on Graph's host only, up to MaxGroups), and keeps the
// groups: no OData cast, which is an advanced query.
func (c *Client) transitiveGroups(ctx context.Context, endpoint, user, token string) ([]string, error) {
	base, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("microsoft graph: graph_endpoint: %w", err)
	}
	next := user + "/transitiveMemberOf?$select=id&$top=999"
	var ids []string
	for next != "" && len(ids) < MaxGroups {
		var page struct {
			Value []struct {
				Type string `json:"@odata.type"`
				ID   string `json:"id"`
			} `json:"value"`
			NextLink string `json:"@odata.nextLink"`
		}
		if err := c.call(ctx, http.MethodGet, next, token, "", &page); err != nil {
			return nil, err
		}
		for _, g := range page.Value {
			if g.Type == "#microsoft.graph.group" && len(ids) < MaxGroups {
				ids = append(ids, g.ID)
			}
		}
		next = page.NextLink
		// The app's Graph token goes nowhere but Graph.
		if u, err := url.Parse(next); next != "" && (err != nil || !strings.EqualFold(u.Scheme, base.Scheme) || !strings.EqualFold(u.Host, base.Host)) {
			return nil, &Error{Status: http.StatusBadGateway, Code: "foreign_next_link", Hint: "Graph's @odata.nextLink leads off graph_endpoint's host; not followed"}
		}
	}
	return ids, nil
}

// remembered is the standing failure of a user's last lookup, or nil.
func (c *Client) remembered(key string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.failures[key]
	if !ok {
		return nil
	}
	if !c.now().Before(f.until) {
		delete(c.failures, key)
		return nil
	}
	return f.err
}

// remember keeps a user's failed lookup until it may have changed.
func (c *Client) remember(key string, err error) {
	hold := ThrottledFor
	var ge *Error
	if errors.As(err, &ge) {
		if ge.throttled() {
			hold = max(ge.RetryAfter, ThrottledFor)
		} else {
			hold = RefusedFor
		}
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failures == nil {
		c.failures = map[string]failure{}
	}
	if len(c.failures) >= 10000 {
		for k, f := range c.failures {
			if !now.Before(f.until) {
				delete(c.failures, k)
			}
		}
	}
	if len(c.failures) < 10000 {
		c.failures[key] = failure{err: err, until: now.Add(hold)}
	}
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// call sends a request to Graph (a JSON body, for a POST) and reads its
// answer; after a 429 or 503 it tries again (maxTries in all) once
// Retry-After, and at least retryFloor, has passed, as long as the context
// allows.
func (c *Client) call(ctx context.Context, method, u, token, body string, v any) error {
	for try := 1; ; try++ {
		req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Accept", "application/json")
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := c.HTTP.Do(req)
		if err != nil {
			return fmt.Errorf("microsoft graph: %w", err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxPage+1))
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("microsoft graph: %w", err)
		}
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			wait := retryAfter(resp.Header.Get("Retry-After"), c.now())
			throttled := &Error{Status: resp.StatusCode, Code: "TooManyRequests", Hint: hint("TooManyRequests"), RetryAfter: wait}
			if deadline, ok := ctx.Deadline(); try >= maxTries || (ok && c.now().Add(max(wait, retryFloor)).After(deadline)) {
				return throttled // no try left, or none worth waiting for
			}
			select {
			case <-time.After(max(wait, retryFloor)):
				continue
			case <-ctx.Done():
				throttled.Hint += ", and the time allowed ran out"
				return throttled
			}
		}
		if resp.StatusCode != http.StatusOK {
			var e struct {
				Error struct {
					Code string `json:"code"`
				} `json:"error"`
			}
			_ = json.Unmarshal(body, &e)
			return &Error{Status: resp.StatusCode, Code: e.Error.Code, Hint: hint(e.Error.Code)}
		}
		if len(body) > maxPage {
			return &Error{Status: resp.StatusCode, Code: "page_too_large", Hint: fmt.Sprintf("a page of Graph's answer is over %d bytes; not read", maxPage)}
		}
		if err := json.Unmarshal(body, v); err != nil {
			return fmt.Errorf("microsoft graph: %w", err)
		}
		return nil
	}
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date; 0 when
// absent or unreadable.
func retryAfter(v string, now time.Time) time.Duration {
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// token is an app-only Graph token for the tenant, cached until a minute
// before it expires; one fetch per tenant at a time.
func (c *Client) token(ctx context.Context, login, endpoint, tenant string) (string, error) {
	c.mu.Lock()
	if t, ok := c.tokens[tenant]; ok && c.now().Before(t.expires) {
		c.mu.Unlock()
		return t.value, nil
	}
	c.mu.Unlock()
	v, err, _ := c.flights.Do("token:"+tenant, func() (any, error) { return c.fetchToken(ctx, login, endpoint, tenant) })
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

// fetchToken asks the tenant's token endpoint for a Graph token.
func (c *Client) fetchToken(ctx context.Context, login, endpoint, tenant string) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {strings.TrimSuffix(endpoint, "/") + "/.default"}}
	tokenURL := strings.TrimSuffix(login, "/") + "/" + url.PathEscape(tenant) + "/oauth2/v2.0/token"
	tr, status, err := oidcprovider.PostToken(ctx, c.HTTP, tokenURL, c.ClientID, c.Credential, form, nil)
	if err != nil {
		return "", fmt.Errorf("microsoft graph token: %w", err)
	}
	if tr.AccessToken == "" {
		if tr.Error != "" {
			return "", &Error{Status: status, Code: tr.Error, Hint: hint(tr.Error)}
		}
		return "", fmt.Errorf("microsoft graph token: HTTP %d without an access token from %s (check graph_login)", status, tokenURL)
	}
	c.mu.Lock()
	if c.tokens == nil {
		c.tokens = map[string]cachedToken{}
	}
	c.tokens[tenant] = cachedToken{tr.AccessToken, c.now().Add(time.Duration(max(int64(tr.ExpiresIn)-60, 0)) * time.Second)}
	c.mu.Unlock()
	return tr.AccessToken, nil
}

func cmpDuration(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
