package b2cauth

import (
	"encoding/json"
	"regexp"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// What can be checked only once the config runs: Caddy gives a handler no
// view of its siblings while provisioning.

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
				warnOrderMistakes(h.logger, active)
				warnTokensInDebugLogs(h.logger, active)
			}
			h.idp.discoverAtStart(ctx)
			return
		}
	}()
}

// warnOrderMistakes logs the handlers that can answer before a b2c_auth
// what it should protect, in the running config.
func warnOrderMistakes(logger *zap.Logger, active caddy.Context) {
	app, err := active.AppIfConfigured("http")
	if err != nil {
		return
	}
	for name, srv := range app.(*caddyhttp.App).Servers {
		for _, m := range orderMistakes(routesFromProvisioned(srv.Routes)) {
			logger.Warn("b2c_auth does not protect what it should: "+m, zap.String("server", name))
		}
	}
}

// tokenPlaceholder finds a session token's placeholder in a handler's
// configuration.
var tokenPlaceholder = regexp.MustCompile(`\{http\.auth\.b2c\.(access_token|id_token|assertion)\}`)

// warnTokensInDebugLogs warns, when debug logging is on, that a handler of
// the running config puts a session token in a request (reverse_proxy's
// header_up X-Token {http.auth.b2c.access_token}): Caddy's debug lines
// print the headers sent upstream, and redact only Cookie and
// Authorization.
func warnTokensInDebugLogs(logger *zap.Logger, active caddy.Context) {
	if !logger.Core().Enabled(zapcore.DebugLevel) {
		return
	}
	app, err := active.AppIfConfigured("http")
	if err != nil {
		return
	}
	for _, srv := range app.(*caddyhttp.App).Servers {
		if name, placeholder := tokenPlaceholderIn(srv.Routes); name != "" {
			logger.Warn("debug logging prints the headers that reverse_proxy sends upstream, and " + name + " puts " + placeholder + " in a request; Caddy redacts only Cookie and Authorization: remove it with a log filter (see docs/operations.md, \"What is logged\")")
			return
		}
	}
}

// tokenPlaceholderIn is the first handler (by its Caddyfile name) whose
// configuration holds a token placeholder, and the placeholder.
func tokenPlaceholderIn(routes caddyhttp.RouteList) (string, string) {
	for _, route := range routes {
		for _, handler := range route.Handlers {
			if sub, ok := handler.(*caddyhttp.Subroute); ok {
				if name, p := tokenPlaceholderIn(sub.Routes); name != "" {
					return name, p
				}
				continue
			}
			// A provisioned handler keeps its own fields (reverse_proxy's
			// headers, a respond body); the JSON of what it loaded is gone.
			data, err := json.Marshal(handler)
			if err != nil {
				continue
			}
			if p := tokenPlaceholder.Find(data); p != nil {
				return caddyfileName(caddy.GetModuleName(handler)), string(p)
			}
		}
	}
	return "", ""
}
