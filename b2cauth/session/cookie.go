package session

import "net/http"

// cookie is a cookie with every attribute set on purpose: HttpOnly, Path
// /, Secure on HTTPS, SameSite Lax, and the __Host- prefix on HTTPS.
func Cookie(r *http.Request, name string) http.Cookie {
	c := http.Cookie{Name: name, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode}
	if r.TLS != nil {
		c.Name, c.Secure = "__Host-"+name, true
	}
	return c
}
