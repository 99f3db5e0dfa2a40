package b2cauth

import (
	"cmp"
	"errors"
	"fmt"
	"time"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/credentials"
)

// CertificateFiles are a certificate credential's PEM files.
type CertificateFiles struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// ClientAssertion is where a federated credential's token comes from:
// Kind "file" (Value a path) or "managed_identity" (Value the client ID of
// a user-assigned managed identity).
type ClientAssertion struct {
	Kind  string `json:"kind"`
	Value string `json:"value"`
	// The audience a managed identity's token is asked for. Default: the
	// issuer's cloud's (api://AzureADTokenExchange, …USGov, …China).
	Audience string `json:"audience,omitempty"`
}

// checkCredential allows at most one credential, and on Azure AD B2C
// only a secret.
func (h *Handler) checkCredential() error {
	n := 0
	for _, set := range []bool{h.ClientSecret != "", h.ClientCertificate != nil, h.ClientAssertion != nil} {
		if set {
			n++
		}
	}
	if n > 1 {
		return errors.New("client_secret, client_certificate and client_assertion: give one credential, not several")
	}
	if (h.ClientCertificate != nil || h.ClientAssertion != nil) && h.platformOf().b2c {
		return errors.New("client_certificate and client_assertion are for Entra ID and External ID: Azure AD B2C apps authenticate with a client_secret (its user flows answer a client assertion with AADB2C99027)")
	}
	if c := h.ClientCertificate; c != nil && (c.Cert == "" || c.Key == "") {
		return errors.New("client_certificate: needs <cert path> <key path> (PEM)")
	}
	if a := h.ClientAssertion; a != nil {
		switch {
		case a.Kind != "file" && a.Kind != "managed_identity":
			return fmt.Errorf("client_assertion: %q is neither file nor managed_identity", a.Kind)
		case a.Value == "":
			return fmt.Errorf("client_assertion %s: needs a value (a path, or the managed identity's client ID)", a.Kind)
		case a.Audience != "" && a.Kind != "managed_identity":
			return errors.New("client_assertion: an audience goes only with managed_identity (a token file's audience is its issuer's business)")
		}
	}
	return nil
}

// buildCredential makes the configured credential, placeholders resolved;
// nil without one (a public client, PKCE only). A certificate is read now,
// so that a wrong path or key is a config error.
func (h *Handler) buildCredential(resolve func(field, v string) (string, error)) (credentials.Credential, error) {
	clock := func() time.Time {
		if h.now == nil { // not provisioned: caddy b2c check
			return time.Now()
		}
		return h.now()
	}
	switch {
	case h.ClientSecret != "":
		s, err := resolve("client_secret", h.ClientSecret)
		return credentials.Secret(s), err
	case h.ClientCertificate != nil:
		cert, err := resolve("client_certificate", h.ClientCertificate.Cert)
		if err != nil {
			return nil, err
		}
		key, err := resolve("client_certificate", h.ClientCertificate.Key)
		if err != nil {
			return nil, err
		}
		c := &credentials.Certificate{ClientID: h.ClientID, CertFile: cert, KeyFile: key, Now: clock}
		if _, _, err := c.Thumbprint(); err != nil {
			return nil, fmt.Errorf("client_certificate: %v", err)
		}
		if warning := credentials.ExposedKeyFile(key); warning != "" && h.logger != nil {
			h.logger.Warn("client_certificate: " + warning)
		}
		return c, nil
	case h.ClientAssertion != nil:
		v, err := resolve("client_assertion", h.ClientAssertion.Value)
		if err != nil {
			return nil, err
		}
		if h.ClientAssertion.Kind == "file" {
			return credentials.AssertionFile(v), nil
		}
		if env := credentials.UnsupportedEnvironment(); env != "" {
			return nil, fmt.Errorf("client_assertion managed_identity: this looks like %s, whose managed identity endpoint b2c_auth does not speak (App Service, Functions, Container Apps and IMDS on VMs and AKS nodes); use client_assertion file or client_certificate", env)
		}
		audience := cmp.Or(h.ClientAssertion.Audience, h.configuredCloud().exchange)
		return &credentials.ManagedIdentity{ClientID: v, Audience: audience, Now: clock}, nil
	}
	return nil, nil
}

// credentialHint says where to look when the provider refuses the
// credential.
func (i *idp) credentialHint() string {
	if _, secret := i.credential.(credentials.Secret); secret || i.credential == nil {
		return "client_secret is wrong or expired (AADB2C90081, AADSTS7000215, AADSTS7000222), or client_id is not the app's"
	}
	return "the app registration does not trust " + i.credential.Describe() + ": see its Certificates & secrets and Federated credentials, and run caddy b2c check"
}
