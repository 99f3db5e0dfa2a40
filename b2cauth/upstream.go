package b2cauth

import (
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
)

// What the handlers after b2c_auth see: the user's placeholders (the usual
// ones always defined), the session's tokens in a namespace of their own,
// App Service's headers with easy_auth_headers, and none of the handler's
// own cookies.

// tokenPlaceholderPrefix is the namespace of the session's tokens, apart
// from the claims so that no claim can shadow them.
const tokenPlaceholderPrefix = "http.auth.b2c."

// anonymousPlaceholders makes {http.auth.user.*} and {http.auth.b2c.*}
// empty for a request without a user (unprotected paths, unauthenticated
// allow): a page or an upstream never gets their literal text.
func anonymousPlaceholders(repl *caddy.Replacer) {
	repl.Map(func(key string) (any, bool) {
		if strings.HasPrefix(key, placeholderPrefix) || strings.HasPrefix(key, tokenPlaceholderPrefix) {
			return "", true
		}
		return nil, false
	})
}

// token answers {http.auth.b2c.*}: access_token, id_token and
// access_token_expires (RFC 3339).
func (id *identity) token(name string) (any, bool) {
	switch name {
	case "access_token":
		if id.session == nil {
			return id.bearerToken, true
		}
		return id.session.AccessToken, true
	case "id_token":
		if id.session == nil {
			return "", true
		}
		return id.session.IDToken, true
	case "session_id":
		// What an operator revokes one session by (caddy b2c revoke
		// --session); not a credential: it opens nothing by itself.
		if id.session == nil {
			return "", true
		}
		return id.session.ID, true
	case "assertion":
		id.assertionMu.Lock()
		defer id.assertionMu.Unlock()
		return id.assertion.token, true
	case "access_token_expires":
		if exp := id.accessExpiry(); !exp.IsZero() {
			return exp.UTC().Format(time.RFC3339), true
		}
		return "", true
	}
	return nil, false
}

// accessExpiry is when the access token expires; zero without one.
func (id *identity) accessExpiry() time.Time {
	switch {
	case id.session == nil:
		return id.expires
	case id.session.AccessExpiry != 0: // the token may not be kept (session_tokens)
		return time.Unix(id.session.AccessExpiry, 0)
	}
	return time.Time{}
}

// setTokenHeaders adds App Service's token store headers:
// X-MS-TOKEN-AAD-ID-TOKEN, -ACCESS-TOKEN and -EXPIRES-ON, on every platform:
// App Service signs in with Azure AD B2C through its Microsoft (aad)
// provider, and names the headers after it (testdata/fixtures/easyauth.md).
func setTokenHeaders(id *identity, header http.Header) {
	if id.session == nil {
		return
	}
	prefix := headerTokenPrefix + easyAuthProvider + "-"
	if id.session.IDToken != "" {
		header.Set(prefix+"Id-Token", id.session.IDToken)
	}
	if id.session.AccessToken != "" {
		header.Set(prefix+"Access-Token", id.session.AccessToken)
		header.Set(prefix+"Expires-On", time.Unix(id.session.AccessExpiry, 0).UTC().Format("2006-01-02T15:04:05.0000000Z"))
	}
}

// ownCookie tells the handler's cookies: the session and its chunks, and
// pending sign-ins and sign-outs.
func ownCookie(name string) bool {
	name = strings.TrimPrefix(name, "__Host-")
	return strings.HasPrefix(name, sessionCookie) || strings.HasPrefix(name, flowCookiePrefix) || strings.HasPrefix(name, logoutCookiePrefix)
}

// restoreCookies gives this block the cookies an earlier block hid.
func restoreCookies(r *http.Request, st *requestState) {
	if st.clientCookies != nil {
		r.Header["Cookie"] = st.clientCookies
	}
}

// hideOwnCookies removes the handler's cookies from the request that goes
// upstream (an app gets the identity, not kilobytes of sealed tokens),
// keeping the client's Cookie header for later b2c_auth blocks. It is on
// every request's path, so it allocates only what it must.
func hideOwnCookies(r *http.Request, st *requestState) {
	orig := r.Header["Cookie"]
	if len(orig) == 0 {
		return
	}
	var kept []string
	changed := false
	for i, line := range orig {
		filtered, lineChanged := withoutOwnCookies(line)
		if lineChanged && !changed {
			changed = true
			kept = orig[:i:i] // the lines before, unchanged; appending copies
		}
		if changed && filtered != "" {
			kept = append(kept, filtered)
		}
	}
	if !changed {
		return
	}
	if st.clientCookies == nil {
		st.clientCookies = orig // never modified: the header gets a new slice
	}
	if len(kept) == 0 {
		delete(r.Header, "Cookie")
		return
	}
	r.Header["Cookie"] = kept
}

// withoutOwnCookies is a Cookie header line without the handler's cookies,
// and whether it had any.
func withoutOwnCookies(line string) (string, bool) {
	var b strings.Builder
	changed := false
	for rest := line; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, ";")
		pair = strings.TrimSpace(pair)
		name, _, _ := strings.Cut(pair, "=")
		switch {
		case name != "" && ownCookie(name):
			changed = true
		case pair != "":
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString(pair)
		}
	}
	if !changed {
		return line, false
	}
	return b.String(), true
}
