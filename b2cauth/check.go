package b2cauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/credentials"
	"github.com/caddy-b2c/caddy-b2c/b2cauth/oidcprovider"

	"github.com/caddyserver/caddy/v2"
	"golang.org/x/oauth2"
)

// finding is one line of a configuration check: a problem (the check
// fails), a warning, or a note.
type finding struct {
	Level string // "problem", "warning" or "ok"
	Text  string
}

func problem(format string, args ...any) finding {
	return finding{"problem", fmt.Sprintf(format, args...)}
}
func warning(format string, args ...any) finding {
	return finding{"warning", fmt.Sprintf(format, args...)}
}
func note(format string, args ...any) finding { return finding{"ok", fmt.Sprintf(format, args...)} }

// checkProvider verifies what this configuration relies on, before a user meets
// it: its placeholders resolve; every policy's metadata and keys can be
// fetched (issuer and endpoints are reported); the provider's clock agrees
// with this one; each site origin's redirect URI is registered (the
// authorize endpoint is asked, as a browser would be sent there); and it
// warns about a missing client secret and http:// sites. `caddy b2c check`
// runs it for every b2c_auth of a config.
func checkProvider(ctx context.Context, h *Handler, origins []string) []finding {
	var out []finding
	repl := caddy.NewReplacer()
	resolve := func(field, v string) string {
		got, err := repl.ReplaceOrErr(v, true, true)
		if err != nil {
			out = append(out, problem("%s: a placeholder is not set (%v): set it in Caddy's environment", field, err))
			return ""
		}
		return got
	}
	c := *h // the configuration as written, resolved on a copy
	c.Tenants, c.Audience = slices.Clone(h.Tenants), slices.Clone(h.Audience)
	_ = c.resolvePlaceholders(func(field, v string) (string, error) { return resolve(field, v), nil })
	c.ClientSecret = resolve("client_secret", c.ClientSecret)
	if len(out) > 0 {
		return out
	}
	if err := c.checkConfig(); err != nil {
		return append(out, problem("%v", err))
	}
	cred, err := c.buildCredential(func(field, v string) (string, error) { return resolve(field, v), nil })
	if err != nil {
		out = append(out, problem("%v", err))
	} else if cred != nil {
		out = append(out, note("client credential: %s", cred.Describe()))
	}
	if cred == nil && err == nil {
		out = append(out, warning("no client_secret: a Web app registration needs one (B2C answers AADB2C90079); only a mobile/desktop registration may do without"))
	}
	if c.RedirectPath == "" {
		c.RedirectPath = defaultRedirectPath
	}
	client := &http.Client{Timeout: 15 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	for _, policy := range c.policies() {
		name := policy
		if name == "" {
			name = "(no user flow)"
		}
		metaURL := c.metadataURL(policy)
		var m oidcprovider.Metadata
		date, err := oidcprovider.GetJSON(ctx, client, metaURL, &m)
		if err != nil {
			out = append(out, problem("%s: metadata at %s: %v (%s)", name, metaURL, err, metadataHint(err)))
			continue
		}
		out = append(out, note("%s: issuer %s; authorize %s; token %s", name, m.Issuer, m.AuthorizationEndpoint, m.TokenEndpoint))
		if !date.IsZero() {
			if skew := time.Since(date); skew > time.Minute || skew < -time.Minute {
				out = append(out, problem("%s: this machine's clock differs from the provider's by %s: tokens will look expired or not yet valid; fix the clock (NTP)", name, skew.Round(time.Second)))
			}
		}
		var keys struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if _, err := oidcprovider.GetJSON(ctx, client, m.JWKSURI, &keys); err != nil || len(keys.Keys) == 0 {
			out = append(out, problem("%s: signing keys at %s: none (%v)", name, m.JWKSURI, err))
		} else {
			out = append(out, note("%s: %d signing key(s)", name, len(keys.Keys)))
		}
		if policy != c.Policy && c.Issuer == "" && c.ExternalID == "" {
			continue // redirect URIs are the same for every user flow of the app
		}
		if cred != nil {
			out = append(out, probeCredential(ctx, client, c.ClientID, m.TokenEndpoint, cred))
		}
		for _, origin := range origins {
			if c.PublicURL != "" {
				origin = strings.TrimSuffix(c.PublicURL, "/")
			}
			if u, err := url.Parse(origin); err == nil && u.Scheme == "http" && u.Hostname() != "localhost" && u.Hostname() != "127.0.0.1" {
				out = append(out, warning("%s is served over http://: in production, sign-in cookies and tokens need HTTPS", origin))
			}
			out = append(out, probeRedirectURI(ctx, client, c.ClientID, m.AuthorizationEndpoint, origin+c.RedirectPath))
		}
	}
	return out
}

// probeRedirectURI asks the authorize endpoint to start a sign-in for the
// redirect URI and tells whether the provider accepts it: an unregistered
// one gives AADB2C90006 (B2C sends it to a registered URI, or shows it) or
// AADSTS50011.
func probeRedirectURI(ctx context.Context, client *http.Client, clientID, authorize, redirectURI string) finding {
	u, err := url.Parse(authorize)
	if err != nil {
		return problem("authorize endpoint %q: %v", authorize, err)
	}
	q := u.Query()
	q.Set("client_id", clientID)
	q.Set("redirect_uri", redirectURI)
	q.Set("response_type", "code")
	q.Set("scope", "openid")
	q.Set("state", "caddy-b2c-check")
	q.Set("nonce", "caddy-b2c-check")
	q.Set("code_challenge", oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier()))
	q.Set("code_challenge_method", "S256")
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return problem("authorize endpoint: %v", err)
	}
	req.Header.Set("Accept", "text/html")
	resp, err := client.Do(req)
	if err != nil {
		return problem("authorize endpoint %s: %v", u.Host, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256<<10))
	text := string(body)
	if loc := resp.Header.Get("Location"); loc != "" {
		if lu, err := url.Parse(loc); err == nil {
			text += " " + lu.Query().Get("error") + " " + lu.Query().Get("error_description")
		}
	}
	for _, code := range []string{"AADB2C90006", "AADSTS50011", "redirect_uri_mismatch"} {
		if strings.Contains(text, code) {
			return problem("redirect URI %s is not registered for client %s (%s): add it to the app registration's redirect URIs, exactly", redirectURI, clientID, code)
		}
	}
	if code := oidcprovider.Code(text); code != "" {
		return problem("authorize endpoint refused the sign-in for %s: %s", redirectURI, code)
	}
	if resp.StatusCode >= 400 {
		return problem("authorize endpoint answered HTTP %d for %s", resp.StatusCode, redirectURI)
	}
	return note("redirect URI %s accepted", redirectURI)
}

// metadataHint says what a failed metadata fetch probably means.
func metadataHint(err error) string {
	var dnsErr *net.DNSError
	var opErr *net.OpError
	msg := err.Error()
	switch {
	case errors.As(err, &dnsErr):
		return "the host does not exist: check the tenant name or the authority's host"
	case errors.As(err, &opErr):
		return "the host cannot be reached: check the address, the port and the network"
	case strings.Contains(msg, "AADB2C90022"):
		return "AADB2C90022: the tenant has no such user flow: check policy"
	case strings.Contains(msg, "HTTP 404"), strings.Contains(msg, "HTTP 400"):
		return "the provider does not know this tenant or user flow: check tenant, authority, issuer and policy"
	default:
		return "is the provider up, and the URL right?"
	}
}

// probeCredential redeems a code that cannot exist with the client's
// credentials: a token endpoint checks the client first, so invalid_client
// (AADB2C90081, AADSTS7000215) means a wrong secret, and invalid_grant
// means it was accepted.
func probeCredential(ctx context.Context, client *http.Client, clientID, tokenEndpoint string, cred credentials.Credential) finding {
	form := url.Values{"grant_type": {"authorization_code"}, "code": {"caddy-b2c-check-not-a-code"},
		"redirect_uri": {"https://localhost/caddy-b2c-check"}}
	tr, _, err := oidcprovider.PostToken(ctx, client, tokenEndpoint, clientID, cred, form, nil)
	if errors.Is(err, oidcprovider.ErrCredential) {
		return problem("client credential: %v", err)
	}
	if err != nil {
		return warning("client credential not checked: %v", err)
	}
	name := "the " + cred.Describe()
	if _, secret := cred.(credentials.Secret); secret {
		name = "client_secret"
	}
	if oidcprovider.UnknownClient(tr.ErrorDescription) {
		return problem("client_id %s is not registered in the tenant (%s): use the app registration's Application (client) ID", clientID, oidcprovider.Code(tr.ErrorDescription))
	}
	if oidcprovider.CredentialRefused(tr.Error, tr.ErrorDescription) {
		return problem("%s was refused (%s %s): it is wrong, expired or not registered; see the app registration's Certificates & secrets (and Federated credentials)", name, tr.Error, oidcprovider.Code(tr.ErrorDescription))
	}
	return note("%s accepted by the token endpoint", name)
}
