package b2cauth

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
)

// Order mistakes. Caddy sorts the directives of a site block and of
// `handle`, but keeps the written order inside `route`: there, a handler
// that answers (respond, file_server, reverse_proxy, …) placed before
// b2c_auth, with a matcher that covers what b2c_auth protects, serves the
// page to anyone, and b2c_auth never runs. A deliberate `respond /healthz`
// before it, whose paths b2c_auth does not cover, is fine.

// answering are the handlers that write the response themselves.
var answering = map[string]bool{
	"static_response": true, "file_server": true, "reverse_proxy": true, "copy_response": true,
	"error": true, "php_fastcgi": true,
}

// orderRoute is a route as the order check sees it.
type orderRoute struct {
	paths       []string // the path patterns of a path-only matcher; nil with none
	conditional bool     // matched on something besides the path (host, method, …)
	handlers    []orderHandler
}

type orderHandler struct {
	name    string
	protect []string     // b2c_auth: its protect paths; nil means every request
	routes  []orderRoute // subroute
}

// shadow is an earlier route that answers requests on its paths.
type shadow struct {
	handler string
	paths   []string // nil: every request
}

// orderMistakes reports, for each b2c_auth, the handlers before it that
// answer what it should protect.
func orderMistakes(routes []orderRoute) []string {
	var out []string
	walkOrder(routes, nil, &out)
	sort.Strings(out)
	return out
}

func walkOrder(routes []orderRoute, before []shadow, out *[]string) {
	before = append([]shadow(nil), before...)
	for _, r := range routes {
		// Within a route, the handlers run in order too: one that answers
		// shadows a b2c_auth after it in the same chain.
		inRoute := before
		for _, h := range r.handlers {
			switch {
			case h.name == "b2c_auth":
				for _, s := range inRoute {
					if covers(s.paths, h.protect) {
						*out = append(*out, fmt.Sprintf("%s (%s) answers before b2c_auth (%s) in the same route: it serves those requests without sign-in; put b2c_auth first", s.handler, describePaths(s.paths), describePaths(h.protect)))
					}
				}
			case h.name == "subroute":
				walkOrder(h.routes, inRoute, out)
			case answering[h.name] && !r.conditional:
				inRoute = append(append([]shadow(nil), inRoute...), shadow{handler: h.name, paths: r.paths})
			}
		}
		if name := answers(r); name != "" && !r.conditional {
			before = append(before, shadow{handler: name, paths: r.paths})
		}
	}
}

// answers is the handler by which a route answers every request it
// matches, or "".
func answers(r orderRoute) string {
	for _, h := range r.handlers {
		if h.name == "b2c_auth" {
			return "" // it protects what follows
		}
		if answering[h.name] {
			return h.name
		}
		if h.name == "subroute" {
			for _, sub := range h.routes {
				if name := answers(sub); name != "" && sub.paths == nil && !sub.conditional {
					return name
				}
			}
		}
	}
	return ""
}

// covers tells whether earlier path patterns take every request of the
// protected ones (nil: every request).
func covers(earlier, protected []string) bool {
	if earlier == nil {
		return true
	}
	if protected == nil {
		protected = []string{"/*"}
	}
	for _, q := range protected {
		for _, p := range earlier {
			if p == "*" || p == "/*" || p == q ||
				(strings.HasSuffix(p, "*") && strings.HasPrefix(strings.TrimSuffix(q, "*"), strings.TrimSuffix(p, "*"))) {
				return true
			}
		}
	}
	return false
}

func describePaths(paths []string) string {
	if paths == nil {
		return "every request"
	}
	return strings.Join(paths, " ")
}

// OrderMistakes checks a JSON config's HTTP servers for handlers that
// answer before a b2c_auth what it should protect (caddy b2c check).
func OrderMistakes(config []byte) ([]string, error) {
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []json.RawMessage `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(config, &cfg); err != nil {
		return nil, err
	}
	var out []string
	for _, srv := range cfg.Apps.HTTP.Servers {
		out = append(out, orderMistakes(routesFromJSON(srv.Routes))...)
	}
	sort.Strings(out)
	return out, nil
}

func routesFromJSON(raw []json.RawMessage) []orderRoute {
	var routes []orderRoute
	for _, rr := range raw {
		var route struct {
			Match  []map[string]json.RawMessage `json:"match"`
			Handle []json.RawMessage            `json:"handle"`
		}
		if json.Unmarshal(rr, &route) != nil {
			continue
		}
		r := orderRoute{}
		for _, set := range route.Match {
			var paths []string
			if p, ok := set["path"]; ok && len(set) == 1 && json.Unmarshal(p, &paths) == nil {
				r.paths = append(r.paths, paths...)
			} else {
				r.conditional = true
			}
		}
		for _, hr := range route.Handle {
			var h struct {
				Handler string                     `json:"handler"`
				Routes  []json.RawMessage          `json:"routes"`
				Protect map[string]json.RawMessage `json:"protect"`
			}
			if json.Unmarshal(hr, &h) != nil {
				continue
			}
			oh := orderHandler{name: h.Handler, routes: routesFromJSON(h.Routes)}
			if h.Handler == "b2c_auth" && h.Protect != nil {
				var paths []string
				if p, ok := h.Protect["path"]; ok && len(h.Protect) == 1 && json.Unmarshal(p, &paths) == nil {
					oh.protect = paths
				} else {
					oh.protect = []string{} // conditional: nothing is sure to be covered
				}
			}
			r.handlers = append(r.handlers, oh)
		}
		routes = append(routes, r)
	}
	return routes
}

// routesFromProvisioned is the order check's view of a running server's
// routes.
func routesFromProvisioned(list caddyhttp.RouteList) []orderRoute {
	var routes []orderRoute
	for _, route := range list {
		r := orderRoute{}
		for _, set := range route.MatcherSets {
			if len(set) == 1 {
				if paths, ok := set[0].(caddyhttp.MatchPath); ok {
					r.paths = append(r.paths, paths...)
					continue
				}
			}
			r.conditional = true
		}
		for _, h := range route.Handlers {
			oh := orderHandler{name: caddy.GetModuleName(h)}
			switch t := h.(type) {
			case *caddyhttp.Subroute:
				oh.routes = routesFromProvisioned(t.Routes)
			case *Handler:
				if t.protect != nil {
					oh.protect = []string{}
					if len(t.protect) == 1 {
						if paths, ok := t.protect[0].(caddyhttp.MatchPath); ok {
							oh.protect = paths
						}
					}
				}
			}
			r.handlers = append(r.handlers, oh)
		}
		routes = append(routes, r)
	}
	return routes
}

// checkedConfigs are the running configs whose routes were checked, so
// that several b2c_auth handlers warn once.
var checkedConfigs sync.Map

// whenRunning waits (until the config is stopped, or 30 s) for the config
// being provisioned to run — Caddy gives a handler no view of its siblings
// nor of its listeners while provisioning — and then checks what can only
// be checked there: the order of the routes (once per config) and the
// provider's metadata, fetched once so that a wrong tenant, authority or
// policy is in the log when Caddy starts, not when the first user comes.
func (h *Handler) whenRunning(ctx caddy.Context) {
	previous := caddy.ActiveContext().Context
	go func() {
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case <-ctx.Done():
				return
			case <-deadline:
				return
			case <-tick.C:
			}
			active := caddy.ActiveContext()
			if active.Context == nil || active.Context == previous {
				continue
			}
			if _, done := checkedConfigs.LoadOrStore(active.Context, true); !done {
				go func() { <-active.Done(); checkedConfigs.Delete(active.Context) }()
				h.warnOrderMistakes(active)
			}
			h.discoverAtStart(ctx)
			return
		}
	}()
}

// warnOrderMistakes logs the handlers that answer before a b2c_auth what
// it should protect, in the running config.
func (h *Handler) warnOrderMistakes(active caddy.Context) {
	app, err := active.AppIfConfigured("http")
	if err != nil {
		return
	}
	for name, srv := range app.(*caddyhttp.App).Servers {
		for _, m := range orderMistakes(routesFromProvisioned(srv.Routes)) {
			h.logger.Warn("b2c_auth does not protect what it should: "+m, zap.String("server", name))
		}
	}
}
