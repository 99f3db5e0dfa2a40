package oidcprovider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/credentials"
)

// The token endpoint: one POST for every grant, the answer in either of
// the shapes Microsoft documents, and its errors with their codes.

// TokenResponse is a token endpoint's answer. Numbers may arrive as JSON
// numbers or strings, as Microsoft's documents disagree.
type TokenResponse struct {
	IDToken          string     `json:"id_token"`
	AccessToken      string     `json:"access_token"`
	RefreshToken     string     `json:"refresh_token"`
	ExpiresIn        flexNumber `json:"expires_in"`
	Error            string     `json:"error"`
	ErrorDescription string     `json:"error_description"`
	// A claims challenge (Conditional Access, authentication context) that
	// the next /authorize request must carry, with interaction_required or
	// invalid_grant.
	Claims string `json:"claims"`
	// The identity platform's finer reason (basic_action,
	// additional_action, message_only: Conditional Access; bad_token, …).
	Suberror string `json:"suberror"`
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

// Redeem posts a grant (a code, a refresh token) to the token endpoint with
// the app's credential, and wants an ID token back. It accepts an answer
// with an ID token and no access token, as B2C gives when no API scope was
// asked.
func (d *Discovered) Redeem(ctx context.Context, credential credentials.Credential, form url.Values) (*TokenResponse, error) {
	p := d.provider
	tr, status, err := PostToken(ctx, p.HTTP, d.Meta.TokenEndpoint, p.ClientID, credential, form, p.observe)
	if err != nil {
		return nil, err
	}
	if tr.Error != "" || status != http.StatusOK {
		if tr.Error == "" {
			tr.Error = "HTTP " + strconv.Itoa(status)
		}
		return tr, &Error{Code: tr.Error, Description: tr.ErrorDescription, Claims: tr.Claims, Suberror: tr.Suberror, Status: status}
	}
	if tr.IDToken == "" {
		return nil, errors.New("token endpoint: no id_token in the answer")
	}
	return tr, nil
}

// ErrCredential is the app's credential that could not be had (a managed
// identity endpoint down, a key file unreadable).
var ErrCredential = errors.New("the app's credential")

// PostToken is the one POST to a token endpoint: the form with client_id
// and the credential (nil for a public client), and the answer as sent,
// with its status; an error only when no answer could be read
// (ErrUnavailable when the endpoint or the credential could not be had).
// observe, when not nil, is told of the request.
func PostToken(ctx context.Context, client *http.Client, tokenEndpoint, clientID string, credential credentials.Credential, form url.Values, observe func(string, time.Time, error)) (*TokenResponse, int, error) {
	form.Set("client_id", clientID)
	if credential != nil {
		if err := credential.Apply(ctx, form, tokenEndpoint); err != nil {
			return nil, 0, fmt.Errorf("%w: %w: %v", ErrUnavailable, ErrCredential, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	resp, err := client.Do(req)
	if observe != nil {
		observe("token", start, err)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%w: token endpoint: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, 0, fmt.Errorf("%w: token endpoint: %v", ErrUnavailable, err)
	}
	var tr TokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		if resp.StatusCode >= 500 {
			return nil, 0, fmt.Errorf("%w: token endpoint: HTTP %d", ErrUnavailable, resp.StatusCode)
		}
		return nil, 0, fmt.Errorf("token endpoint: HTTP %d, not JSON", resp.StatusCode)
	}
	return &tr, resp.StatusCode, nil
}
