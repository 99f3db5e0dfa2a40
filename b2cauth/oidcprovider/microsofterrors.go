package oidcprovider

import (
	"errors"
	"strings"
)

// Microsoft's errors in one place: a provider's OAuth error with its
// description, the AADB2C or AADSTS code in it, and what each kind means
// for a renewal and for the app's credential.

// Error is an OAuth error from the provider, by redirect or from
// the token endpoint.
type Error struct {
	Code        string // the OAuth error
	Description string
	Claims      string // a claims challenge for the next /authorize
	Status      int    // the token endpoint's HTTP status; 0 from a redirect
}

func (e *Error) Error() string {
	return "provider error " + e.Code + " " + Code(e.Description)
}

// b2cCode extracts the code that starts a Microsoft error description:
// AADB2C… from B2C, AADSTS… from Entra ID and External ID.
func Code(desc string) string {
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

// refreshOutcome names what a failed renewal means, from the OAuth error
// (Microsoft: react to the error field, not to the code numbers, which
// change): "refused" (invalid_grant: the provider no longer backs the
// session — AADB2C90129 revoked, 90080 expired, 90128 account deleted),
// "interaction_required" (interaction_required, consent_required,
// login_required: Conditional Access wants the user at /authorize — MFA
// step-up, sign-in frequency, a claims challenge), or "failed" (anything
// else: the provider is down, slow or misconfigured; retried with backoff).
func RefreshOutcome(err error) string {
	var pe *Error
	if errors.As(err, &pe) {
		switch pe.Code {
		case "invalid_grant":
			return "refused"
		case "interaction_required", "consent_required", "login_required":
			return "interaction_required"
		}
	}
	return "failed"
}

// credentialRefused tells whether a token endpoint's error refuses the
// app's credential: invalid_client (a wrong secret, an unknown certificate),
// or one of the identity platform's codes for a client assertion it cannot
// trust, which a federated token gets as invalid_request (no federated
// credential of the app matches its issuer, subject or audience; a tenant
// token that is not a managed identity's; expired; a bad signature).
func CredentialRefused(oauthError, description string) bool {
	if oauthError == "invalid_client" || oauthError == "unauthorized_client" {
		return true
	}
	switch Code(description) {
	case "AADSTS70021", "AADSTS700211", "AADSTS700212", "AADSTS700213", "AADSTS700222", "AADSTS700226", "AADSTS700024", "AADSTS700027", "AADB2C99027":
		return true
	}
	return false
}
