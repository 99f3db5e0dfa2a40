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
	Suberror    string // the identity platform's finer reason
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

// RefreshOutcome names what a failed renewal means, from the OAuth error
// and its fields (Microsoft: react to the error field, not to the code
// numbers, which change): "interaction_required" (interaction_required,
// consent_required, login_required, or any error that carries a claims
// challenge or a Conditional Access suberror — real AADSTS50076 answers
// come as invalid_grant with suberror basic_action and claims: the user
// must go to /authorize, with the claims), "refused" (another
// invalid_grant: the provider no longer backs the session — AADB2C90129
// revoked, 90080 expired, 90128 account deleted), or "failed" (anything
// else: the provider is down, slow or misconfigured; retried with backoff).
func RefreshOutcome(err error) string {
	var pe *Error
	if errors.As(err, &pe) {
		switch {
		case pe.Claims != "" || conditionalAccessSuberrors[pe.Suberror]:
			return "interaction_required"
		case pe.Code == "invalid_grant":
			return "refused"
		case pe.Code == "interaction_required" || pe.Code == "consent_required" || pe.Code == "login_required":
			return "interaction_required"
		}
	}
	return "failed"
}

// conditionalAccessSuberrors are the identity platform's suberrors that
// ask for the user at /authorize (MSAL's list: an action the user can take,
// such as multi-factor authentication, or a message to show).
var conditionalAccessSuberrors = map[string]bool{"basic_action": true, "additional_action": true, "message_only": true}

// credentialRefused tells whether a token endpoint's error refuses the
// app's credential: invalid_client (a wrong secret, an unknown certificate),
// or one of the identity platform's codes for a client assertion it cannot
// trust, which a federated token gets as invalid_request (no federated
// credential of the app matches its issuer, subject or audience; a tenant
// token that is not a managed identity's; expired; a bad signature).
func CredentialRefused(oauthError, description string) bool {
	if UnknownClient(description) {
		return false // the client ID is wrong, not its credential
	}
	if oauthError == "invalid_client" || oauthError == "unauthorized_client" {
		return true
	}
	switch Code(description) {
	case "AADSTS70021", "AADSTS700211", "AADSTS700212", "AADSTS700213", "AADSTS700222", "AADSTS700226", "AADSTS700024", "AADSTS700027", "AADB2C99027":
		return true
	}
	return false
}

// UnknownClient tells a token endpoint's answer to a client ID the tenant
// does not have: AADB2C90018 from B2C, AADSTS700016 ("Application with
// identifier … was not found in the directory") from the identity
// platform. Both come as unauthorized_client, which would otherwise blame
// the credential.
func UnknownClient(description string) bool {
	switch Code(description) {
	case "AADB2C90018", "AADSTS700016":
		return true
	}
	return false
}
