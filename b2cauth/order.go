package b2cauth

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"

	"github.com/caddy-b2c/caddy-b2c/internal/site"
)

// Order mistakes. Caddy sorts the directives of a site block and of
// `handle`, but keeps the written order inside `route` (and a JSON config
// keeps whatever it says): there, a handler that can answer (respond,
// file_server, reverse_proxy, php_fastcgi, metrics, invoke, a subroute
// holding one, a handler the check does not know) placed before b2c_auth,
// with a matcher that can overlap what b2c_auth protects, serves pages to
// anyone, and b2c_auth never runs for them.
//
// What counts: a handler whose matcher is only paths is reported when its
// paths take in what b2c_auth protects (`respond /admin/*` before
// `b2c_auth /admin/*`), and a deliberate `respond /healthz` before a
// b2c_auth that protects everything is taken as meant. Any other matcher
// (method, not, header, query, expression, …) may let some requests of the
// protected paths through, and is reported as such. Host matchers tell
// sites apart: routes of other sites never overlap.

// scope is which requests a matcher takes, as far as the check can tell.
type scope struct {
	hosts  []string // nil: any host
	paths  []string // nil: any path
	others []string // matchers the check cannot compare (method, not, …)
}

// within is the scope of a matcher nested in an outer one: the inner
// lists where it has them.
func (s scope) within(outer scope) scope {
	out := outer
	if s.hosts != nil {
		out.hosts = s.hosts
	}
	if s.paths != nil {
		out.paths = s.paths
	}
	out.others = append(slices.Clone(outer.others), s.others...)
	return out
}

// scopeOf reads matcher sets (any of which may match) as a scope.
func scopeOf(sets []map[string]any) scope {
	var s scope
	if len(sets) == 0 {
		return s
	}
	anyHost, anyPath := false, false
	for _, set := range sets {
		hosts, paths := false, false
		for name, v := range set {
			list, isList := v.([]string)
			switch {
			case name == "host" && isList:
				s.hosts, hosts = append(s.hosts, list...), true
			case name == "path" && isList:
				s.paths, paths = append(s.paths, list...), true
			default:
				if !slices.Contains(s.others, name) {
					s.others = append(s.others, name)
				}
			}
		}
		anyHost, anyPath = anyHost || !hosts, anyPath || !paths
	}
	if anyHost {
		s.hosts = nil
	}
	if anyPath {
		s.paths = nil
	}
	sort.Strings(s.others)
	return s
}

// handlerKind is what a handler may do with a request.
type handlerKind int

const (
	passes    handlerKind = iota // hands every request on (header, vars, rewrite, …)
	harmless                     // answers, but serves nothing (redir, abort)
	answers                      // writes a response (respond, file_server, …)
	mayAnswer                    // a handler the check does not know
	protects                     // b2c_auth
	routes                       // subroute: its routes decide
)

// passing are the handlers known to hand every request on. b2c_emulator
// answers only its own provider endpoints, which are public by design.
var passing = []string{"headers", "vars", "map", "rewrite", "encode", "request_body", "templates", "push",
	"intercept", "tracing", "log_append", "authentication", "copy_response_headers", "b2c_emulator"}

// answering are the handlers that write responses themselves.
var answering = []string{"static_response", "file_server", "reverse_proxy", "copy_response", "error",
	"metrics", "invoke", "acme_server", "php_fastcgi"}

// orderRoute is a route as the order check sees it.
type orderRoute struct {
	scope    scope
	handlers []orderHandler
}

// orderHandler is a handler as the order check sees it.
type orderHandler struct {
	name    string          // as the Caddyfile calls it: respond, php_fastcgi, …
	raw     json.RawMessage // its JSON, from a config
	kind    handlerKind
	protect *scope       // b2c_auth: nil means every request
	routes  []orderRoute // subroute
}

// kindOf classifies a handler by its module name.
func kindOf(module string) handlerKind {
	switch {
	case module == "b2c_auth":
		return protects
	case module == "subroute":
		return routes
	case slices.Contains(passing, module):
		return passes
	case slices.Contains(answering, module):
		return answers
	}
	return mayAnswer
}

// caddyfileNames are the Caddyfile's names of handlers whose module is
// named otherwise.
var caddyfileNames = map[string]string{"static_response": "respond", "authentication": "basic_auth", "headers": "header"}

func caddyfileName(module string) string {
	if n, ok := caddyfileNames[module]; ok {
		return n
	}
	return module
}

// staticKind tells a redirect or an abort (which serve nothing) from a
// respond that serves a page.
func staticKind(status string, body string, abort bool) handlerKind {
	code, _ := strconv.Atoi(status)
	if abort || (code >= 300 && code < 400 && body == "") {
		return harmless
	}
	return answers
}

// shadow is a handler that can answer some requests before a b2c_auth.
type shadow struct {
	handler string
	scope   scope
	unknown bool // the check does not know the handler
}

// orderMistakes reports, for each b2c_auth, the handlers before it that
// can answer what it should protect.
func orderMistakes(list []orderRoute) []string {
	var out []string
	walkOrder(list, scope{}, orderState{}, &out)
	sort.Strings(out)
	return slices.Compact(out)
}

// orderState is what the requests have met so far: handlers that may have
// answered them, and the scopes where a b2c_auth for every request ran
// (what follows there is signed in).
type orderState struct {
	shadows []shadow
	guards  []scope
}

// guarded tells whether every request of s went through a b2c_auth.
func (st orderState) guarded(s scope) bool {
	for _, g := range st.guards {
		if g.paths == nil && len(g.others) == 0 && (g.hosts == nil || (s.hosts != nil && !slices.ContainsFunc(s.hosts, func(h string) bool { return !slices.Contains(g.hosts, h) }))) {
			return true
		}
	}
	return false
}

// walkOrder walks routes in the order they run, in an outer scope, after
// what ran before; it returns the state after them.
func walkOrder(list []orderRoute, outer scope, st orderState, out *[]string) orderState {
	for _, r := range list {
		here := r.scope.within(outer)
		// Within a route, the handlers run in order too: one that answers
		// shadows a b2c_auth after it in the same chain.
		for _, h := range r.handlers {
			switch h.kind {
			case protects:
				target := here
				if h.protect != nil {
					target = h.protect.within(here)
				}
				for _, s := range st.shadows {
					if m := mistake(s, target); m != "" {
						*out = append(*out, m)
					}
				}
				if h.protect == nil {
					st.guards = append(slices.Clip(st.guards), here)
				}
			case routes:
				st = walkOrder(h.routes, here, st, out)
			case answers, mayAnswer:
				if !st.guarded(here) {
					st.shadows = append(slices.Clip(st.shadows), shadow{handler: h.name, scope: here, unknown: h.kind == mayAnswer})
				}
			}
		}
	}
	return st
}

// mistake is the finding when a shadow can answer requests of a b2c_auth's
// scope, or "".
func mistake(s shadow, target scope) string {
	if !hostsOverlap(s.scope.hosts, target.hosts) {
		return ""
	}
	what := describeScope(s.scope)
	if s.unknown {
		what = "a handler the check does not know; " + what
	}
	if len(s.scope.others) == 0 && comparable(s.scope.paths) {
		// Paths alone: a handler on paths that do not take in what
		// b2c_auth protects is deliberate (respond /healthz).
		if !covers(s.scope.paths, target.paths) {
			return ""
		}
		if !s.unknown {
			return fmt.Sprintf("%s (%s) answers before b2c_auth (%s): it serves those requests without sign-in; put b2c_auth first", s.handler, what, describeScope(target))
		}
	} else if !pathsOverlap(s.scope.paths, target.paths) {
		return ""
	}
	return fmt.Sprintf("%s (%s) may answer before b2c_auth (%s): it may serve some requests without sign-in; put b2c_auth first", s.handler, what, describeScope(target))
}

// comparable tells whether path patterns are ones the check compares: a
// * only at the end.
func comparable(paths []string) bool {
	for _, p := range paths {
		if strings.Contains(strings.TrimSuffix(p, "*"), "*") {
			return false
		}
	}
	return true
}

// covers tells whether earlier path patterns take every request of some
// protected one (nil: every request).
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

// pathsOverlap tells whether some request may match both lists of path
// patterns (nil: every path). A pattern the check cannot compare (a * that
// is not at the end) is taken to overlap.
func pathsOverlap(a, b []string) bool {
	if a == nil || b == nil {
		return true
	}
	for _, p := range a {
		for _, q := range b {
			if pathPatternsOverlap(p, q) {
				return true
			}
		}
	}
	return false
}

func pathPatternsOverlap(p, q string) bool {
	if !comparable([]string{p, q}) {
		return true
	}
	pp, qp := strings.TrimSuffix(p, "*"), strings.TrimSuffix(q, "*")
	switch {
	case strings.HasSuffix(p, "*") && strings.HasSuffix(q, "*"):
		return strings.HasPrefix(pp, qp) || strings.HasPrefix(qp, pp)
	case strings.HasSuffix(p, "*"):
		return strings.HasPrefix(q, pp)
	case strings.HasSuffix(q, "*"):
		return strings.HasPrefix(p, qp)
	}
	return strings.EqualFold(p, q)
}

// hostsOverlap tells whether some request may match both host lists (nil:
// any host).
func hostsOverlap(a, b []string) bool {
	if a == nil || b == nil {
		return true
	}
	for _, p := range a {
		for _, q := range b {
			if site.HostMatches(p, q) || site.HostMatches(q, p) || (strings.Contains(p, "*") && strings.Contains(q, "*")) {
				return true
			}
		}
	}
	return false
}

func describeScope(s scope) string {
	var parts []string
	if s.paths == nil && len(s.others) == 0 {
		parts = append(parts, "every request")
	} else if s.paths != nil {
		parts = append(parts, strings.Join(s.paths, " "))
	}
	if len(s.others) > 0 {
		parts = append(parts, "matched on "+strings.Join(s.others, ", "))
	}
	return strings.Join(parts, "; ")
}

// matcherSetsFromProvisioned reads a running route's matcher sets as
// matcherSetsFromJSON reads a config's.
func matcherSetsFromProvisioned(sets caddyhttp.MatcherSets) []map[string]any {
	var out []map[string]any
	for _, set := range sets {
		m := map[string]any{}
		for _, matcher := range set {
			switch t := matcher.(type) {
			case caddyhttp.MatchPath:
				m["path"] = append(asStrings(m["path"]), t...)
			case *caddyhttp.MatchPath:
				m["path"] = append(asStrings(m["path"]), *t...)
			case caddyhttp.MatchHost:
				m["host"] = append(asStrings(m["host"]), t...)
			case *caddyhttp.MatchHost:
				m["host"] = append(asStrings(m["host"]), *t...)
			default:
				name := fmt.Sprintf("%T", matcher)
				if mod, ok := matcher.(caddy.Module); ok {
					name = caddy.GetModuleName(mod)
				}
				m[name] = nil
			}
		}
		out = append(out, m)
	}
	return out
}

func asStrings(v any) []string {
	s, _ := v.([]string)
	return s
}

// routesFromProvisioned is the order check's view of a running server's
// routes.
func routesFromProvisioned(list caddyhttp.RouteList) []orderRoute {
	var out []orderRoute
	for _, route := range list {
		r := orderRoute{scope: scopeOf(matcherSetsFromProvisioned(route.MatcherSets))}
		for _, h := range route.Handlers {
			module := caddy.GetModuleName(h)
			oh := orderHandler{name: caddyfileName(module), kind: kindOf(module)}
			switch t := h.(type) {
			case *caddyhttp.Subroute:
				oh.routes = routesFromProvisioned(t.Routes)
			case *caddyhttp.StaticResponse:
				oh.kind = staticKind(string(t.StatusCode), t.Body, t.Abort)
			case *reverseproxy.Handler:
				if tr, ok := t.Transport.(caddy.Module); ok && caddy.GetModuleName(tr) == "fastcgi" {
					oh.name = "php_fastcgi"
				}
			case *Handler:
				if t.protect != nil {
					s := scopeOf(matcherSetsFromProvisioned(caddyhttp.MatcherSets{t.protect}))
					oh.protect = &s
				}
			}
			r.handlers = append(r.handlers, oh)
		}
		out = append(out, r)
	}
	return out
}
