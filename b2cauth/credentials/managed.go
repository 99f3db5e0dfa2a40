package credentials

import (
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
// for to serve as a federated credential (Microsoft: "api://AzureADTokenExchange").
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
// is retried with backoff (3 tries) before it fails.
type ManagedIdentity struct {
	ClientID string // the user-assigned identity's client ID
	HTTP     *http.Client
	Now      func() time.Time // the clock its token's expiry is judged by; default time.Now

	mu        sync.Mutex
	token     string
	expires   time.Time
	firstWait time.Duration // before the second try; default 500 ms, doubling
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
	q := url.Values{"resource": {TokenExchangeAudience}, "client_id": {m.ClientID}}
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
	return "managed identity " + m.ClientID + " (token for " + TokenExchangeAudience + " from " + u.Scheme + "://" + u.Host + u.Path + ")"
}

// Token is the identity's token for api://AzureADTokenExchange, from the
// cache while it has more than 5 minutes to live.
func (m *ManagedIdentity) Token(ctx context.Context) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.token != "" && m.expires.Sub(m.now()) > 5*time.Minute {
		return m.token, nil
	}
	var err error
	wait := m.firstWait
	if wait == 0 {
		wait = 500 * time.Millisecond
	}
	for try := 0; try < 3; try, wait = try+1, wait*2 {
		if try > 0 {
			select {
			case <-ctx.Done():
				return "", fmt.Errorf("managed identity: %w (last: %v)", ctx.Err(), err)
			case <-time.After(wait):
			}
		}
		var token string
		var expires time.Time
		var final bool
		if token, expires, final, err = m.fetch(ctx); err == nil {
			m.token, m.expires = token, expires
			return token, nil
		}
		if final {
			break
		}
	}
	return "", fmt.Errorf("managed identity %s: %w", m.ClientID, err)
}

// fetch asks the endpoint once; final reports an answer that asking again
// cannot change (Microsoft: retry on 404, 410, 429 and 5xx; other 4xx
// "are design-time errors").
func (m *ManagedIdentity) fetch(ctx context.Context) (token string, expires time.Time, final bool, err error) {
	u, header := m.endpoint()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", time.Time{}, false, err
	}
	req.Header = header
	client := m.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", time.Time{}, false, err
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string          `json:"access_token"`
		ExpiresOn   json.RawMessage `json:"expires_on"` // seconds since the epoch, a string on both platforms
		ExpiresIn   json.RawMessage `json:"expires_in"`
		Error       string          `json:"error"`
		Description string          `json:"error_description"`
	}
	switch code := resp.StatusCode; code {
	case http.StatusNotFound, http.StatusGone, http.StatusTooManyRequests: // passing states
	default:
		final = code >= 400 && code < 500
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tr); err != nil || tr.AccessToken == "" {
		if tr.Error != "" {
			return "", time.Time{}, final, fmt.Errorf("HTTP %d %s: %s", resp.StatusCode, tr.Error, tr.Description)
		}
		return "", time.Time{}, final, fmt.Errorf("HTTP %d: %w", resp.StatusCode, errNoToken)
	}
	expires = m.now().Add(time.Hour)
	if on, err := strconv.ParseInt(strings.Trim(string(tr.ExpiresOn), `"`), 10, 64); err == nil {
		expires = time.Unix(on, 0)
	} else if in, err := strconv.ParseInt(strings.Trim(string(tr.ExpiresIn), `"`), 10, 64); err == nil {
		expires = m.now().Add(time.Duration(in) * time.Second)
	}
	return tr.AccessToken, expires, false, nil
}

// sha1Thumbprint is a certificate's SHA-1 thumbprint in hex capitals, as
// the Entra admin center shows it (not used for signing: the assertion
// names the certificate by its SHA-256 thumbprint).
func sha1Thumbprint(der []byte) string {
	sum := sha1.Sum(der)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}
