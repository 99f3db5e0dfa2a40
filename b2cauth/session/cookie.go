package session

import "net/http"

// cookie is a cookie with every attribute set on purpose: HttpOnly, Path
// /, Secure on HTTPS, SameSite Lax, and the __Host- prefix on HTTPS.
func Cookie(r *http.Request, name string) http.Cookie {
	return http.Cookie{Name: CookieName(r, name), Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil}
}

// CookieName is the name Cookie gives a cookie: name, or on HTTPS
// __Host-name.
func CookieName(r *http.Request, name string) string {
	if r.TLS != nil {
		return "__Host-" + name
	}
	return name
}
