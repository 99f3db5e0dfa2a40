package credentials

import (
	"cmp"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// TokenExchangeAudience is the resource a managed identity's token must be
// for to serve as a federated credential in the global cloud (Microsoft:
// "api://AzureADTokenExchange"; the national clouds have their own).
const TokenExchangeAudience = "api://AzureADTokenExchange"

// imdsEndpoint is the Azure Instance Metadata Service's token endpoint, at
// its fixed link-local address (VMs, VM scale sets, AKS nodes).
const imdsEndpoint = "http://169.254.169.254/metadata/identity/oauth2/token"

// ManagedIdentity is a user-assigned managed identity's token for
// api://AzureADTokenExchange, as the assertion of a federated identity
// credential on the app. On App Service, Functions and Container Apps the
// platform sets IDENTITY_ENDPOINT and IDENTITY_HEADER; elsewhere IMDS
// answers. (The variables also point it at the emulator in tests and local
// runs.) The token is cached until 5 minutes before it expires; a request
// is retried as Microsoft says (retryWait) before it fails.
type ManagedIdentity struct {
	ClientID string // the user-assigned identity's client ID
	// Audience is the resource the token is asked for: the cloud's
	// token-exchange audience. Default: TokenExchangeAudience.
	Audience string
	HTTP     *http.Client
	Now      func() time.Time // the clock its token's expiry is judged by; default time.Now

	mu      sync.Mutex
	token   string
	expires time.Time
	unit    time.Duration // the retry table's second; tests shrink it
}

// UnsupportedEnvironment names a managed identity platform this client does
// not speak, from the variables it sets, or "": Service Fabric (its
// endpoint's certificate is pinned by IDENTITY_SERVER_THUMBPRINT) and
// Azure Arc (IMDS_ENDPOINT, and a challenge with a key file), which would
// otherwise be taken for App Service or a VM.
func UnsupportedEnvironment() string {
	switch {
	case os.Getenv("IDENTITY_SERVER_THUMBPRINT") != "":
		return "Service Fabric (IDENTITY_SERVER_THUMBPRINT is set)"
	case os.Getenv("IDENTITY_ENDPOINT") != "" && os.Getenv("IMDS_ENDPOINT") != "":
		return "Azure Arc (IDENTITY_ENDPOINT and IMDS_ENDPOINT are set)"
	}
	return ""
}

func (m *ManagedIdentity) audience() string {
	if m.Audience != "" {
		return m.Audience
	}
	return TokenExchangeAudience
}

func (m *ManagedIdentity) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// endpoint is where the token comes from, and how: App Service's variables
// when set, else IMDS.
func (m *ManagedIdentity) endpoint() (u *url.URL, header http.Header) {
	q := url.Values{"resource": {m.audience()}, "client_id": {m.ClientID}}
	if ep, secret := os.Getenv("IDENTITY_ENDPOINT"), os.Getenv("IDENTITY_HEADER"); ep != "" && secret != "" {
		u, err := url.Parse(ep)
		if err == nil {
			q.Set("api-version", "2019-08-01")
			u.RawQuery = q.Encode()
			return u, http.Header{"X-Identity-Header": {secret}}
		}
	}
	u, _ = url.Parse(imdsEndpoint)
	q.Set("api-version", "2018-02-01")
	u.RawQuery = q.Encode()
	return u, http.Header{"Metadata": {"true"}}
}

func (m *ManagedIdentity) Apply(ctx context.Context, form url.Values, _ string) error {
	token, err := m.Token(ctx)
	if err != nil {
		return err
	}
	form.Set("client_assertion_type", AssertionType)
	form.Set("client_assertion", token)
	return nil
}

func (m *ManagedIdentity) Describe() string {
	u, _ := m.endpoint()
	return "managed identity " + m.ClientID + " (token for " + m.audience() + " from " + u.Scheme + "://" + u.Host + u.Path + ")"
}

// Token is the identity's token for the exchange audience, from the cache
// while it has more than 5 minutes to live.
func (m *ManagedIdentity) Token(ctx context.Context) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.token != "" && m.expires.Sub(m.now()) > 5*time.Minute {
		return m.token, nil
	}
	unit := cmp.Or(m.unit, time.Second)
	var waited time.Duration
	for try := 1; ; try++ {
		token, expires, status, err := m.fetch(ctx)
		if err == nil {
			m.token, m.expires = token, expires
			return token, nil
		}
		wait, again := retryWait(status, try, waited, unit)
		if !again {
			return "", fmt.Errorf("managed identity %s: %w", m.ClientID, err)
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("managed identity %s: %w (last: %v)", m.ClientID, ctx.Err(), err)
		case <-time.After(wait):
			waited += wait
		}
	}
}

// Microsoft's retry table for managed identity endpoints
// (how-to-use-vm-token, "Retry guidance"): retry 404, 410, 429 and 5xx
// (and an unanswered request), not another 4xx ("design-time errors"),
// with exponential backoff; a 410 means IMDS is updating and is retried
// for up to 70 seconds; wait at least a second after a 5xx.
const (
	maxTries   = 5  // for every retried answer but 410
	goneWindow = 70 // seconds (units) a 410 is retried for
	maxBackoff = 16 // seconds (units) between two tries at most
)

// retryWait says whether to ask again after a failed try (status 0: no
// answer), and how long to wait first: 1, 2, 4, 8… units, at most
// maxBackoff, over maxTries tries, or while a 410's window lasts.
func retryWait(status, try int, waited, unit time.Duration) (time.Duration, bool) {
	retried := status == 0 || status == http.StatusNotFound || status == http.StatusGone ||
		status == http.StatusTooManyRequests || status >= 500
	if !retried {
		return 0, false
	}
	wait := unit << min(try-1, 4)
	wait = min(wait, maxBackoff*unit)
	if status == http.StatusGone {
		return wait, waited+wait <= goneWindow*unit
	}
	return wait, try < maxTries
}

// fetch asks the endpoint once; status is its answer's (0 without one).
func (m *ManagedIdentity) fetch(ctx context.Context) (token string, expires time.Time, status int, err error) {
	u, header := m.endpoint()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", time.Time{}, 0, err
	}
	req.Header = header
	client := m.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", time.Time{}, 0, err
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string          `json:"access_token"`
		ExpiresOn   json.RawMessage `json:"expires_on"` // seconds since the epoch, a string on both platforms
		ExpiresIn   json.RawMessage `json:"expires_in"`
		Error       string          `json:"error"`
		Description string          `json:"error_description"`
	}
	status = resp.StatusCode
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tr); err != nil || tr.AccessToken == "" {
		if status == http.StatusOK {
			status = http.StatusBadGateway // a 200 without a token: asked again
		}
		if tr.Error != "" {
			return "", time.Time{}, status, fmt.Errorf("HTTP %d %s: %s", resp.StatusCode, tr.Error, tr.Description)
		}
		return "", time.Time{}, status, fmt.Errorf("HTTP %d: %w", resp.StatusCode, errNoToken)
	}
	expires = m.now().Add(time.Hour)
	if on, err := strconv.ParseInt(strings.Trim(string(tr.ExpiresOn), `"`), 10, 64); err == nil {
		expires = time.Unix(on, 0)
	} else if in, err := strconv.ParseInt(strings.Trim(string(tr.ExpiresIn), `"`), 10, 64); err == nil {
		expires = m.now().Add(time.Duration(in) * time.Second)
	}
	return tr.AccessToken, expires, status, nil
}

// sha1Thumbprint is a certificate's SHA-1 thumbprint in hex capitals, as
// the Entra admin center shows it (not used for signing: the assertion
// names the certificate by its SHA-256 thumbprint).
func sha1Thumbprint(der []byte) string {
	sum := sha1.Sum(der)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}
