// Package site tells which host names a Caddy site answers: the host
// matchers on the way from a server's routes to one of its handlers (the
// site block's addresses). The plugin's handlers ask it so that what they
// sign or serve is bound to the names the configuration gives, never to a
// client's Host header alone.
package site

import (
	"slices"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Hosts finds, once per server, the host names a handler's site names.
type Hosts struct {
	byServer sync.Map // *caddyhttp.Server → func() []string
}

// Of is the host names (patterns such as *.example.com) that the routes
// leading to handler in srv match on; none for a site that answers any
// host (`:443`, `http://`).
func (h *Hosts) Of(srv *caddyhttp.Server, handler caddyhttp.MiddlewareHandler) []string {
	if v, ok := h.byServer.Load(srv); ok { // the request path: no allocation
		return v.(func() []string)()
	}
	v, _ := h.byServer.LoadOrStore(srv, sync.OnceValue(func() []string {
		hosts, _ := routeHosts(srv.Routes, handler, nil)
		return hosts
	}))
	return v.(func() []string)()
}

// routeHosts walks routes (into subroutes) to the one holding target and
// returns the host matchers on the way; found is false when it is not
// there.
func routeHosts(routes caddyhttp.RouteList, target caddyhttp.MiddlewareHandler, outer []string) (hosts []string, found bool) {
	for _, route := range routes {
		here := outer
		for _, set := range route.MatcherSets {
			for _, m := range set {
				if mh, ok := m.(*caddyhttp.MatchHost); ok {
					here = append(slices.Clone(here), *mh...)
				} else if mh, ok := m.(caddyhttp.MatchHost); ok {
					here = append(slices.Clone(here), mh...)
				}
			}
		}
		for _, handler := range route.Handlers {
			if handler == target {
				return here, true
			}
			if sub, ok := handler.(*caddyhttp.Subroute); ok {
				if hosts, found := routeHosts(sub.Routes, target, here); found {
					return hosts, true
				}
			}
		}
	}
	return nil, false
}

// HostMatches tells whether a host matcher's pattern (example.com,
// *.example.com) names host (without a port), as Caddy's host matcher
// compares them.
func HostMatches(pattern, host string) bool {
	if strings.EqualFold(pattern, host) {
		return true
	}
	if !strings.Contains(pattern, "*") {
		return false
	}
	for {
		p, pRest, pMore := strings.Cut(pattern, ".")
		q, qRest, qMore := strings.Cut(host, ".")
		if pMore != qMore || (p != "*" && !strings.EqualFold(p, q)) {
			return false
		}
		if !pMore {
			return true
		}
		pattern, host = pRest, qRest
	}
}
