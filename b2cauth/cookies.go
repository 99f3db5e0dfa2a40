package b2cauth

import "net/http"

// cookie is a cookie with every attribute set on purpose: HttpOnly, Path
// /, Secure on HTTPS, SameSite Lax, and the __Host- prefix on HTTPS.
func cookie(r *http.Request, name string) http.Cookie {
	c := http.Cookie{Name: name, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode}
	if secure(r) {
		c.Name, c.Secure = "__Host-"+name, true
	}
	return c
}
