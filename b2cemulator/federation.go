package b2cemulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// tokenExchangeAudience is the audience of a token that serves as a
// federated credential (Microsoft: "api://AzureADTokenExchange").
const tokenExchangeAudience = "api://AzureADTokenExchange"

// managedIdentityPath is where the emulator serves its managed identity
// endpoint: IMDS's path, so that IDENTITY_ENDPOINT can name it.
const managedIdentityPath = "/metadata/identity/oauth2/token"

// FederatedCredential is a federated identity credential of an app
// registration: tokens of this issuer, for this subject and one of these
// audiences, prove the app (workload identity federation).
type FederatedCredential struct {
	Issuer  string `json:"issuer"`
	Subject string `json:"subject"`
	// Default: api://AzureADTokenExchange.
	Audiences []string `json:"audiences,omitempty"`
}

// ManagedIdentity is a user-assigned managed identity the emulator's
// managed identity endpoint issues tokens for.
type ManagedIdentity struct {
	ClientID string `json:"client_id"`
	// Its object (principal) ID: a federated credential's subject. Default:
	// derived from the client ID.
	ObjectID string `json:"object_id,omitempty"`
}

// managedIdentityToken serves the managed identity endpoint, in both shapes
// Azure has: IMDS (`Metadata: true`, api-version 2018-02-01) and App
// Service / Container Apps (`X-IDENTITY-HEADER: <admin key>`, api-version
// 2019-08-01, so IDENTITY_ENDPOINT and IDENTITY_HEADER point a client here).
// It issues a user-assigned identity's token for api://AzureADTokenExchange,
// signed by the tenant: what a federated credential with the tenant's
// issuer and the identity's object ID trusts.
func (e *Emulator) managedIdentityToken(w http.ResponseWriter, r *http.Request) error {
	fail := func(status int, code, msg string) error {
		return writeJSON(w, status, map[string]string{"error": code, "error_description": msg})
	}
	if r.Method != http.MethodGet {
		return fail(http.StatusMethodNotAllowed, "invalid_request", "The managed identity endpoint answers GET.")
	}
	q := r.URL.Query()
	appService := r.Header.Get("X-IDENTITY-HEADER") != ""
	switch {
	case appService && !constantTimeEqual(r.Header.Get("X-IDENTITY-HEADER"), e.AdminKey):
		return fail(http.StatusUnauthorized, "invalid_request", "X-IDENTITY-HEADER is not this endpoint's IDENTITY_HEADER (the emulator's admin key).")
	case !appService && r.Header.Get("Metadata") != "true":
		return fail(http.StatusBadRequest, "bad_request_102", "Required metadata header not specified")
	case q.Get("api-version") == "":
		// Both endpoints require the version they speak (IMDS 2018-02-01,
		// App Service 2019-08-01); the text is our model of the answer.
		return fail(http.StatusBadRequest, "invalid_request", "Required query variable 'api-version' is missing")
	case q.Get("resource") != tokenExchangeAudience:
		return fail(http.StatusBadRequest, "invalid_resource", "AADSTS500011: The emulator's managed identities get tokens for "+tokenExchangeAudience+" only.")
	}
	var mi *ManagedIdentity
	for i := range e.ManagedIdentities {
		if m := &e.ManagedIdentities[i]; m.ClientID == q.Get("client_id") {
			mi = m
		}
	}
	if mi == nil {
		return fail(http.StatusBadRequest, "invalid_request", "Identity not found")
	}
	now := e.state.now()
	exp := now.Add(24 * time.Hour)
	token, err := e.sign(object{
		{"aud", tokenExchangeAudience}, {"iss", entraIssuer(r, e.TenantID)},
		{"iat", now.Unix()}, {"nbf", now.Unix()}, {"exp", exp.Unix()},
		{"azp", mi.ClientID}, {"azpacr", "2"}, {"idtyp", "app"}, {"oid", mi.ObjectID}, {"sub", mi.ObjectID},
		{"tid", e.TenantID}, {"ver", "2.0"},
		{"xms_mirid", "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/emulator/providers/Microsoft.ManagedIdentity/userAssignedIdentities/" + mi.ClientID},
	})
	if err != nil {
		return err
	}
	on := strconv.FormatInt(exp.Unix(), 10)
	if appService {
		return writeJSON(w, http.StatusOK, map[string]string{"access_token": token, "expires_on": on,
			"resource": tokenExchangeAudience, "token_type": "Bearer", "client_id": mi.ClientID})
	}
	return writeJSON(w, http.StatusOK, map[string]string{"access_token": token, "refresh_token": "",
		"expires_in": strconv.Itoa(int(time.Until(exp).Seconds())), "expires_on": on, "not_before": strconv.FormatInt(now.Unix(), 10),
		"resource": tokenExchangeAudience, "token_type": "Bearer"})
}

// checkFederatedAssertion checks a token from another issuer presented as
// the client's assertion, as Entra does: a federated credential of the
// client names its issuer (AADSTS700211), its subject (AADSTS700213) and
// one of its audiences (AADSTS700212); it is signed by a key of the
// issuer's JWKS, found through the issuer's metadata (AADSTS700027); it is
// within its time range (AADSTS700024). A token of the tenant itself is
// trusted only from a managed identity (AADSTS700226). A federated token is
// not one-time: the same one may serve many requests until it expires.
func (e *Emulator) checkFederatedAssertion(r *http.Request, c *Client, assertion string) *b2cError {
	bad := func(code, msg string) *b2cError { return &b2cError{"invalid_client", code, msg} }
	jws, err := jose.ParseSigned(assertion, []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256})
	if err != nil || len(jws.Signatures) != 1 {
		return bad("AADSTS50027", "JWT token is invalid or malformed.")
	}
	var claims struct {
		Iss, Sub  string
		Aud       any
		Exp, Nbf  float64
		XMSMIRID  string `json:"xms_mirid"`
		Audiences []string
	}
	if json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &claims) != nil {
		return bad("AADSTS50027", "JWT token is invalid or malformed.")
	}
	switch a := claims.Aud.(type) {
	case string:
		claims.Audiences = []string{a}
	case []any:
		for _, v := range a {
			if s, ok := v.(string); ok {
				claims.Audiences = append(claims.Audiences, s)
			}
		}
	}
	presented := fmt.Sprintf("Assertion Issuer: '%s'. Assertion Subject: '%s'. Assertion Audience: '%s'.", claims.Iss, claims.Sub, strings.Join(claims.Audiences, ","))
	var byIssuer []FederatedCredential
	for _, fc := range c.FederatedCredentials {
		if fc.Issuer == claims.Iss {
			byIssuer = append(byIssuer, fc)
		}
	}
	if len(byIssuer) == 0 {
		return &b2cError{"invalid_request", "AADSTS700211", "No matching federated identity record found for presented assertion issuer '" + claims.Iss + "'. " + presented}
	}
	var match *FederatedCredential
	for i, fc := range byIssuer {
		if fc.Subject == claims.Sub { // "matching is done using a case-sensitive comparison"
			match = &byIssuer[i]
		}
	}
	if match == nil {
		return &b2cError{"invalid_request", "AADSTS700213", "No matching federated identity record found for presented assertion subject '" + claims.Sub + "'. " + presented}
	}
	if !slices.ContainsFunc(claims.Audiences, func(a string) bool { return slices.Contains(match.Audiences, a) }) {
		return &b2cError{"invalid_request", "AADSTS700212", "No matching federated identity record found for presented assertion audience '" + strings.Join(claims.Audiences, ",") + "'. " + presented}
	}
	var key *jose.JSONWebKey
	own := strings.HasSuffix(claims.Iss, "/"+e.TenantID+"/v2.0") // the tenant's issuer, by whichever host
	if own {
		key = e.state.publicKey(jws.Signatures[0].Header.KeyID)
	} else {
		key, err = issuerKey(r.Context(), claims.Iss, jws.Signatures[0].Header.KeyID)
		if err != nil {
			return bad("AADSTS700027", "Client assertion failed signature validation: the federated issuer's keys could not be read ("+err.Error()+").")
		}
	}
	if key == nil {
		return bad("AADSTS700027", "Client assertion failed signature validation: no key of the issuer has the assertion's kid.")
	}
	if _, err := jws.Verify(key); err != nil {
		return bad("AADSTS700027", "Client assertion failed signature validation.")
	}
	if own && claims.XMSMIRID == "" {
		return bad("AADSTS700226", "Only MSI tokens may be used as Federated Identity Credentials for AAD issuer.")
	}
	now := e.state.now()
	if claims.Exp == 0 || now.After(time.Unix(int64(claims.Exp), 0).Add(assertionSkew)) || now.Add(assertionSkew).Before(time.Unix(int64(claims.Nbf), 0)) {
		return bad("AADSTS700024", "Client assertion is not within its valid time range.")
	}
	return nil
}

// issuerKey finds a key of an issuer by kid, through the issuer's OpenID
// metadata and JWKS (only issuers a federated credential names are read).
func issuerKey(ctx context.Context, issuer, kid string) (*jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var meta struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := getJSON(ctx, strings.TrimSuffix(issuer, "/")+"/.well-known/openid-configuration", &meta); err != nil {
		return nil, err
	}
	if meta.JWKSURI == "" {
		return nil, errors.New("the issuer's metadata has no jwks_uri")
	}
	var set jose.JSONWebKeySet
	if err := getJSON(ctx, meta.JWKSURI, &set); err != nil {
		return nil, err
	}
	if keys := set.Key(kid); len(keys) > 0 {
		return &keys[0], nil
	}
	return nil, nil
}

// getJSON reads a JSON document.
func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v)
}
