package b2cauth

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
)

// The token endpoint: one POST for every grant, the answer in either of
// the shapes Microsoft documents, and its errors with their codes.

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
func (i *idp) redeem(ctx context.Context, d *discovered, form url.Values) (*tokenResponse, error) {
	form.Set("client_id", i.clientID)
	if i.credential != nil {
		if err := i.credential.Apply(ctx, form, d.meta.TokenEndpoint); err != nil {
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
	resp, err := i.client.Do(req)
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
