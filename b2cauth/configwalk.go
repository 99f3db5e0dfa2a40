package b2cauth

import (
	"encoding/json"
	"maps"
	"slices"
	"sort"
	"strings"
)

// A JSON config as the order check and the commands read it: its HTTP
// servers, their routes in the order check's view, and the b2c_auth
// handlers in them.

// OrderMistakes checks a JSON config's HTTP servers for handlers that can
// answer before a b2c_auth what it should protect (caddy b2c check).
func OrderMistakes(config []byte) ([]string, error) {
	servers, err := jsonServers(config)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, srv := range servers {
		out = append(out, orderMistakes(srv.routes)...)
	}
	sort.Strings(out)
	return out, nil
}

// jsonServer is an HTTP server of a JSON config, as the order check and
// the commands read it: its routes in the order check's view.
type jsonServer struct {
	name        string
	listen      []string
	tlsPolicies bool // it has TLS connection policies
	routes      []orderRoute
}

// jsonServers reads a JSON config's HTTP servers, sorted by name: the one
// walker of a JSON config.
func jsonServers(config []byte) ([]jsonServer, error) {
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Listen      []string          `json:"listen"`
					Routes      []json.RawMessage `json:"routes"`
					TLSPolicies json.RawMessage   `json:"tls_connection_policies"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(config, &cfg); err != nil {
		return nil, err
	}
	var out []jsonServer
	for _, name := range slices.Sorted(maps.Keys(cfg.Apps.HTTP.Servers)) {
		srv := cfg.Apps.HTTP.Servers[name]
		out = append(out, jsonServer{name: name, listen: srv.Listen, tlsPolicies: len(srv.TLSPolicies) > 0, routes: routesFromJSON(srv.Routes)})
	}
	return out, nil
}

// eachB2CAuth calls visit for every b2c_auth in routes (subroutes
// included), with the scope of the routes that lead to it.
func eachB2CAuth(list []orderRoute, outer scope, visit func(h orderHandler, s scope)) {
	for _, r := range list {
		here := r.scope.within(outer)
		for _, h := range r.handlers {
			switch h.kind {
			case protects:
				visit(h, here)
			case routes:
				eachB2CAuth(h.routes, here, visit)
			}
		}
	}
}

// matcherSetsFromJSON reads JSON matcher sets: host and path lists, and
// the names of the others.
func matcherSetsFromJSON(sets []map[string]json.RawMessage) []map[string]any {
	var out []map[string]any
	for _, set := range sets {
		m := map[string]any{}
		for name, raw := range set {
			var list []string
			if (name == "host" || name == "path") && json.Unmarshal(raw, &list) == nil {
				m[name] = list
			} else {
				m[name] = nil // another matcher (or one that cannot be read): not compared
			}
		}
		out = append(out, m)
	}
	return out
}

func routesFromJSON(raw []json.RawMessage) []orderRoute {
	var list []orderRoute
	for _, rr := range raw {
		var route struct {
			Match  []map[string]json.RawMessage `json:"match"`
			Handle []json.RawMessage            `json:"handle"`
		}
		if json.Unmarshal(rr, &route) != nil {
			continue
		}
		r := orderRoute{scope: scopeOf(matcherSetsFromJSON(route.Match))}
		for _, hr := range route.Handle {
			var h struct {
				Handler   string                     `json:"handler"`
				Routes    []json.RawMessage          `json:"routes"`
				Protect   map[string]json.RawMessage `json:"protect"`
				Status    json.RawMessage            `json:"status_code"`
				Body      string                     `json:"body"`
				Abort     bool                       `json:"abort"`
				Transport struct {
					Protocol string `json:"protocol"`
				} `json:"transport"`
			}
			if json.Unmarshal(hr, &h) != nil {
				continue
			}
			oh := orderHandler{name: caddyfileName(h.Handler), raw: hr, kind: kindOf(h.Handler), routes: routesFromJSON(h.Routes)}
			switch {
			case h.Handler == "static_response":
				oh.kind = staticKind(strings.Trim(string(h.Status), `"`), h.Body, h.Abort)
			case h.Handler == "reverse_proxy" && h.Transport.Protocol == "fastcgi":
				oh.name = "php_fastcgi"
			case h.Handler == "b2c_auth" && h.Protect != nil:
				s := scopeOf(matcherSetsFromJSON([]map[string]json.RawMessage{h.Protect}))
				oh.protect = &s
			}
			r.handlers = append(r.handlers, oh)
		}
		list = append(list, r)
	}
	return list
}
