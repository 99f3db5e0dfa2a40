package b2cauth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
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
// that the outermost trusted proxy received; else the request's own.
func (h *Handler) origin(r *http.Request) string {
	if h.PublicURL != "" {
		return strings.TrimSuffix(h.PublicURL, "/")
	}
	scheme, host := "http", r.Host
	if secure(r) {
		scheme = "https"
	}
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted {
		hops := h.trustedHops(r)
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

// trustedHops counts the trusted proxies a request came through: the one
// that connected (trusted, or this is not called), and each X-Forwarded-For
// address from the right that is in the server's trusted_proxies, as
// Caddy's trusted_proxies_strict walks them.
func (h *Handler) trustedHops(r *http.Request) int {
	hops := 1
	ranges := h.trustedRanges(r)
	addrs := forwardedList(r.Header, "X-Forwarded-For")
	for j := len(addrs) - 1; j >= 0; j-- {
		ip, err := netip.ParseAddr(strings.Trim(addrs[j], "[]"))
		if err != nil || !containsAddr(ranges, ip.Unmap()) {
			break
		}
		hops++
	}
	return hops
}

func containsAddr(ranges []netip.Prefix, ip netip.Addr) bool {
	for _, p := range ranges {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// trustedRanges are the server's trusted_proxies. Caddy keeps its loaded
// source to itself, so the handler loads one of its own from the server's
// configuration, once per server.
func (h *Handler) trustedRanges(r *http.Request) []netip.Prefix {
	srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if !ok || srv.TrustedProxiesRaw == nil {
		return nil
	}
	v, _ := h.proxySources.LoadOrStore(srv, sync.OnceValue(func() caddyhttp.IPRangeSource {
		src, err := h.loadIPSource(srv.TrustedProxiesRaw)
		if err != nil {
			h.logger.Error("trusted_proxies: cannot read the server's ranges; X-Forwarded-* hops beyond the connecting proxy are not trusted", zap.Error(err))
		}
		return src
	}))
	if src := v.(func() caddyhttp.IPRangeSource)(); src != nil {
		return src.GetIPRanges(r)
	}
	return nil
}

// loadIPSource loads an http.ip_sources module from its JSON (whose
// "source" names the module), in the handler's context.
func (h *Handler) loadIPSource(raw json.RawMessage) (caddyhttp.IPRangeSource, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, err
	}
	var name string
	if err := json.Unmarshal(fields["source"], &name); err != nil || name == "" {
		return nil, fmt.Errorf("no source")
	}
	delete(fields, "source")
	rest, _ := json.Marshal(fields)
	mod, err := h.ctx.LoadModuleByID("http.ip_sources."+name, rest)
	if err != nil {
		return nil, err
	}
	src, ok := mod.(caddyhttp.IPRangeSource)
	if !ok {
		return nil, fmt.Errorf("%T is not an IP range source", mod)
	}
	return src, nil
}

// validHost accepts a host[:port] with no path, user info or spaces.
func validHost(h string) bool {
	u, err := url.Parse("http://" + h)
	return err == nil && u.Host == h && u.User == nil && u.Path == "" && len(h) <= 255
}
