package b2cauth

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// The site's public origin, for redirect URIs and same-origin checks.

// secure tells whether the request came over HTTPS.
func secure(r *http.Request) bool { return r.TLS != nil }

// redirectURI is the absolute callback URL on this site.
func (h *Handler) redirectURI(r *http.Request) string {
	return h.origin(r) + h.RedirectPath
}

// origin is the site's public scheme://host: public_url when set; else,
// when the request comes from one of the server's trusted_proxies (a load
// balancer that terminates TLS), the X-Forwarded-Proto and X-Forwarded-Host
// that the outermost trusted proxy received (trustedHops); else the
// request's own.
func (h *Handler) origin(r *http.Request) string {
	if h.PublicURL != "" {
		return strings.TrimSuffix(h.PublicURL, "/")
	}
	scheme, host := "http", r.Host
	if secure(r) {
		scheme = "https"
	}
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted {
		hops := trustedHops(r)
		if p := strings.ToLower(forwardedHop(r.Header, "X-Forwarded-Proto", hops)); p == "http" || p == "https" {
			scheme = p
		}
		if fh := strings.ToLower(forwardedHop(r.Header, "X-Forwarded-Host", hops)); fh != "" && validHost(fh) {
			host = fh
		}
	}
	return scheme + "://" + host
}

// forwardedHop is the value of an X-Forwarded-* header that the outermost
// of hops trusted proxies received. Each proxy appends what it received,
// as for X-Forwarded-For, so a client's own values stand to the left and
// the walk goes from the right: past the proxy that connected (the last
// value) and hops-1 more. A chain with fewer values than proxies (one
// that sets the header instead of appending) gives its leftmost.
func forwardedHop(header http.Header, name string, hops int) string {
	values := forwardedList(header, name)
	if len(values) == 0 {
		return ""
	}
	i := max(len(values)-hops, 0)
	return values[i]
}

// forwardedList is a forwarded header's values, every line and comma.
func forwardedList(header http.Header, name string) []string {
	var out []string
	for _, line := range header.Values(name) {
		for v := range strings.SplitSeq(line, ",") {
			if v = strings.TrimSpace(v); v != "" {
				out = append(out, v)
			}
		}
	}
	return out
}

// trustedHops counts the trusted proxies a request came through. Caddy
// tells only whether the connecting peer is trusted and, under
// trusted_proxies_strict, the client's address: the rightmost
// X-Forwarded-For address that is not a trusted proxy. The proxies are
// then that address's right-hand neighbours and the peer. Without strict
// mode Caddy's client_ip is the leftmost address, which a client chooses:
// only the peer counts.
func trustedHops(r *http.Request) int {
	srv, _ := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if srv == nil || srv.TrustedProxiesStrict == 0 {
		return 1
	}
	client, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	headers := srv.ClientIPHeaders
	if len(headers) == 0 {
		headers = []string{"X-Forwarded-For"}
	}
	var addrs []string
	for _, name := range headers {
		addrs = append(addrs, forwardedList(r.Header, name)...)
	}
	for j := len(addrs) - 1; j >= 0; j-- {
		if sameAddr(addrs[j], client) {
			return len(addrs) - j
		}
	}
	return len(addrs) + 1 // every address a trusted proxy: the outermost received the original
}

// sameAddr tells whether a forwarded address (perhaps with a port or
// brackets) is ip.
func sameAddr(forwarded, ip string) bool {
	host, _, err := net.SplitHostPort(forwarded)
	if err != nil {
		host = forwarded
	}
	host, _, _ = strings.Cut(strings.Trim(host, "[]"), "%")
	a, err := netip.ParseAddr(host)
	b, err2 := netip.ParseAddr(ip)
	return err == nil && err2 == nil && a.Unmap() == b.Unmap()
}

// validHost accepts a host[:port] with no path, user info or spaces.
func validHost(h string) bool {
	u, err := url.Parse("http://" + h)
	return err == nil && u.Host == h && u.User == nil && u.Path == "" && len(h) <= 255
}
