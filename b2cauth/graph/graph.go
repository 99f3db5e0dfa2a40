// Package graph reads a user's group memberships from Microsoft Graph with
// an app-only token, for the groups a token cannot carry: Entra ID's
// overage (past 200 groups a token has _claim_names/_claim_sources instead
// of groups, and that source is the retired Azure AD Graph) and Azure AD
// B2C, whose tokens have no groups claim. The app needs the application
// permission GroupMember.Read.All, with admin consent.
package graph

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Client reads group memberships. Its token comes from the tenant's own
// token endpoint (on B2C too: user flows cannot issue Graph tokens), with
// the client-credentials grant.
type Client struct {
	// Endpoint is Microsoft Graph's root: https://graph.microsoft.com, or a
	// sovereign cloud's (https://graph.microsoft.us, https://microsoftgraph.chinacloudapi.cn).
	Endpoint string
	// Login is the identity platform's host for Graph tokens:
	// https://login.microsoftonline.com, or a sovereign cloud's.
	Login string
	// The application's credentials.
	ClientID string
	// Credential authenticates the app at the token endpoint.
	Credential interface {
		Apply(ctx context.Context, form url.Values, tokenEndpoint string) error
	}
	// HTTP is the client requests go through.
	HTTP *http.Client
	// MaxWait bounds the time one lookup may take, retries included.
	MaxWait time.Duration

	mu     sync.Mutex
	tokens map[string]cachedToken // by tenant
}

type cachedToken struct {
	value   string
	expires time.Time
}

// Error is Graph's (or the token endpoint's) refusal, with what to fix.
type Error struct {
	Status int
	Code   string // Graph's error code, or the OAuth error
	Hint   string
}

func (e *Error) Error() string {
	return fmt.Sprintf("microsoft graph: HTTP %d %s: %s", e.Status, e.Code, e.Hint)
}

// hints say what to fix for Graph's usual refusals.
func hint(code string) string {
	switch code {
	case "Authorization_RequestDenied":
		return "grant the app the application permission GroupMember.Read.All on Microsoft Graph, with admin consent"
	case "InvalidAuthenticationToken":
		return "the Graph token was refused: check graph_endpoint and graph_login (the same cloud)"
	case "invalid_client", "unauthorized_client":
		return "the app's credentials were refused by the token endpoint for Graph: check client_id and client_secret"
	case "Request_ResourceNotFound":
		return "no such user in the tenant"
	case "TooManyRequests":
		return "throttled by Graph"
	}
	return "unexpected answer"
}

// MemberGroups lists the object IDs of the security groups a user (by
// object ID) is a member of, directly or not, following Graph's paging
// (@odata.nextLink) and honouring Retry-After on 429, within MaxWait.
func (c *Client) MemberGroups(ctx context.Context, tenant, userID string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmpDuration(c.MaxWait, 10*time.Second))
	defer cancel()
	token, err := c.token(ctx, tenant)
	if err != nil {
		return nil, err
	}
	next := strings.TrimSuffix(c.Endpoint, "/") + "/v1.0/users/" + url.PathEscape(userID) +
		"/transitiveMemberOf/microsoft.graph.group?$select=id&$top=999"
	var ids []string
	for pages := 0; next != "" && pages < 100; pages++ {
		var page struct {
			Value []struct {
				ID string `json:"id"`
			} `json:"value"`
			NextLink string `json:"@odata.nextLink"`
		}
		if err := c.get(ctx, next, token, &page); err != nil {
			return nil, err
		}
		for _, g := range page.Value {
			ids = append(ids, g.ID)
		}
		next = page.NextLink
	}
	return ids, nil
}

// get fetches a Graph URL, retrying after a 429 as long as the context allows.
func (c *Client) get(ctx context.Context, u, token string, v any) error {
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Accept", "application/json")
		resp, err := c.HTTP.Do(req)
		if err != nil {
			return fmt.Errorf("microsoft graph: %w", err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			wait := time.Second
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
				wait = time.Duration(s) * time.Second
			}
			select {
			case <-time.After(wait):
				continue
			case <-ctx.Done():
				return &Error{Status: resp.StatusCode, Code: "TooManyRequests", Hint: hint("TooManyRequests") + ", and the time allowed ran out"}
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
		if err := json.Unmarshal(body, v); err != nil {
			return fmt.Errorf("microsoft graph: %w", err)
		}
		return nil
	}
}

// token is an app-only Graph token for the tenant, cached until a minute
// before it expires.
func (c *Client) token(ctx context.Context, tenant string) (string, error) {
	c.mu.Lock()
	if t, ok := c.tokens[tenant]; ok && time.Now().Before(t.expires) {
		c.mu.Unlock()
		return t.value, nil
	}
	c.mu.Unlock()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {c.ClientID},
		"scope": {strings.TrimSuffix(c.Endpoint, "/") + "/.default"}}
	tokenURL := strings.TrimSuffix(c.Login, "/") + "/" + url.PathEscape(tenant) + "/oauth2/v2.0/token"
	if err := c.Credential.Apply(ctx, form, tokenURL); err != nil {
		return "", fmt.Errorf("microsoft graph token: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return "", fmt.Errorf("microsoft graph token: %w", err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string          `json:"access_token"`
		ExpiresIn   json.RawMessage `json:"expires_in"`
		Error       string          `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tr); err != nil || tr.AccessToken == "" {
		if tr.Error != "" {
			return "", &Error{Status: resp.StatusCode, Code: tr.Error, Hint: hint(tr.Error)}
		}
		return "", fmt.Errorf("microsoft graph token: HTTP %d without an access token from %s (check graph_login)", resp.StatusCode, tokenURL)
	}
	seconds, _ := strconv.Atoi(strings.Trim(string(tr.ExpiresIn), `"`))
	c.mu.Lock()
	if c.tokens == nil {
		c.tokens = map[string]cachedToken{}
	}
	c.tokens[tenant] = cachedToken{tr.AccessToken, time.Now().Add(time.Duration(max(seconds-60, 0)) * time.Second)}
	c.mu.Unlock()
	return tr.AccessToken, nil
}

func cmpDuration(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
