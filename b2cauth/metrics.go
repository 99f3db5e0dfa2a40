package b2cauth

import (
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/oidcprovider"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics, under caddy_b2c_auth_ in Caddy's own registry (the admin
// endpoint's /metrics and the metrics handler show them). Every label has
// a small, fixed set of values: never a user, a token, or anything a
// client can choose freely.
type metricSet struct {
	signIns        *prometheus.CounterVec   // result, policy
	callbackErrors *prometheus.CounterVec   // code
	sharded        []prometheus.Collector   // requests_total and bearer_verifications_total: a CounterFunc per label value, over a shardedCounter
	fetches        *prometheus.CounterVec   // kind, result
	fetchSeconds   *prometheus.HistogramVec // kind
	refreshes      *prometheus.CounterVec   // result
	revocations    *prometheus.CounterVec   // origin

	byOutcome [outcomeCount]*shardedCounter      // requests, counted on every request
	byBearer  [verificationCount]*shardedCounter // bearer verifications, cached ones included
	byRefresh map[string]prometheus.Counter
}

// outcome is what became of a request through b2c_auth: the outcome label
// of requests_total.
type outcome uint8

const (
	outcomeSession outcome = iota
	outcomeBearer
	outcomeAnonymous
	outcomeRedirected
	outcome401
	outcome403
	outcome429
	outcome500
	outcome503
	outcomeCount
)

var outcomeNames = [outcomeCount]string{"session", "bearer", "anonymous", "redirected", "401", "403", "429", "500", "503"}

// verification is the result label of bearer_verifications_total.
type verification uint8

const (
	bearerValid verification = iota
	bearerInvalid
	bearerInsufficientScope
	bearerUnavailable
	verificationCount
)

var verificationNames = [verificationCount]string{"valid", "invalid", "insufficient_scope", "unavailable"}

var (
	metricsOnce sync.Once
	metrics     metricSet
)

// registerMetrics makes the collectors (once per process) and registers
// them in a Caddy context's registry (once per registry).
func registerMetrics(registry *prometheus.Registry) {
	const ns, sub = "caddy", "b2c_auth"
	metricsOnce.Do(func() {
		metrics = metricSet{
			signIns: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "sign_ins_total",
				Help: "Sign-ins by result (success, error, cancelled) and policy."}, []string{"result", "policy"}),
			callbackErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "callback_errors_total",
				Help: "Failed callbacks by cause: the provider's AADB2C or AADSTS code, state_mismatch, token_refused."}, []string{"code"}),
			fetches: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "provider_fetches_total",
				Help: "Requests to the identity provider by kind (metadata, keys, token, userinfo) and result (ok, error)."}, []string{"kind", "result"}),
			fetchSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "provider_fetch_seconds",
				Help: "Latency of requests to the identity provider, by kind.", Buckets: prometheus.DefBuckets}, []string{"kind"}),
			refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "refreshes_total",
				Help: "Session renewals by result: renewed; refused (invalid_grant) and interaction_required, which end the session; blocked (interaction asked again right after a sign-in); failed and backoff (retried later); expired (tokens dead, signing in again)."}, []string{"result"}),
			revocations: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "revocations_total",
				Help: "Sign-outs recorded, by origin: user (sign-out, everywhere), front_channel (the provider's front-channel logout), provider (a refused renewal), operator (caddy b2c revoke)."}, []string{"origin"}),
			byRefresh: map[string]prometheus.Counter{},
		}
		for _, r := range refreshResults {
			metrics.byRefresh[r] = metrics.refreshes.WithLabelValues(r)
		}
		for o, name := range outcomeNames {
			metrics.byOutcome[o] = new(shardedCounter)
			metrics.sharded = append(metrics.sharded, metrics.byOutcome[o].counterFunc(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "requests_total",
				Help:        "Requests through b2c_auth by outcome: session, bearer, anonymous, redirected, 401, 403, 429 (too many sign-ins of one user), 500 (provider misconfigured), 503.",
				ConstLabels: prometheus.Labels{"outcome": name}}))
		}
		for r, name := range verificationNames {
			metrics.byBearer[r] = new(shardedCounter)
			metrics.sharded = append(metrics.sharded, metrics.byBearer[r].counterFunc(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "bearer_verifications_total",
				Help:        "Bearer token verifications by result: valid, invalid, insufficient_scope, unavailable.",
				ConstLabels: prometheus.Labels{"result": name}}))
		}
	})
	if registry == nil {
		return
	}
	for _, c := range append([]prometheus.Collector{metrics.signIns, metrics.callbackErrors, metrics.fetches, metrics.fetchSeconds, metrics.refreshes, metrics.revocations}, metrics.sharded...) {
		if err := registry.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				panic(err) // only a programming error can get here
			}
		}
	}
}

// countRequest counts a request's outcome.
func countRequest(o outcome) {
	metrics.byOutcome[o].inc()
}

// shardedCounter is a counter that requests on every core increment
// without sharing one cache line: each adds to one of its shards, and a
// scrape sums them.
type shardedCounter struct {
	shards [16]struct {
		n atomic.Uint64
		_ [56]byte // a cache line each
	}
}

func (c *shardedCounter) inc() { c.shards[rand.Uint32()%16].n.Add(1) }

// counterFunc is the counter as Prometheus reads it.
func (c *shardedCounter) counterFunc(opts prometheus.CounterOpts) prometheus.CounterFunc {
	return prometheus.NewCounterFunc(opts, c.value)
}

func (c *shardedCounter) value() float64 {
	var sum uint64
	for i := range c.shards {
		sum += c.shards[i].n.Load()
	}
	return float64(sum)
}

// countRevocation counts a recorded sign-out by its origin: user,
// front_channel, provider or operator.
func countRevocation(origin string) {
	metrics.revocations.WithLabelValues(origin).Inc()
}

// refreshResults are the values of refreshes_total's result label.
var refreshResults = []string{"renewed", "refused", "interaction_required", "blocked", "failed", "backoff", "expired"}

// countRefresh counts a renewal's result.
func countRefresh(result string) {
	metrics.byRefresh[result].Inc()
}

// countBearer counts a bearer token's verification by its result.
func countBearer(err error) {
	if err == nil { // every cached token's request: nothing to allocate
		metrics.byBearer[bearerValid].inc()
		return
	}
	var scopeErr *accessCheckError
	switch {
	case errors.As(err, &scopeErr):
		metrics.byBearer[bearerInsufficientScope].inc()
	case errors.Is(err, oidcprovider.ErrUnavailable):
		metrics.byBearer[bearerUnavailable].inc()
	default:
		metrics.byBearer[bearerInvalid].inc()
	}
}

// countSignIn counts a finished sign-in.
func countSignIn(result, policy string) {
	if policy == "" {
		policy = "none"
	}
	metrics.signIns.WithLabelValues(result, policy).Inc()
}

// knownCodes are the provider codes counted by name (those of B2C's and the
// identity platform's references that an app meets); any other is counted
// as AADB2C_other, AADSTS_other or other, so forged callbacks cannot add
// label values.
var knownCodes = func() map[string]bool {
	m := map[string]bool{"state_mismatch": true, "token_refused": true}
	for _, c := range strings.Fields(`AADB2C90006 AADB2C90007 AADB2C90008 AADB2C90010 AADB2C90012 AADB2C90013
		AADB2C90014 AADB2C90018 AADB2C90022 AADB2C90035 AADB2C90036 AADB2C90043 AADB2C90057 AADB2C90067
		AADB2C90077 AADB2C90079 AADB2C90080 AADB2C90081 AADB2C90083 AADB2C90085 AADB2C90086 AADB2C90088
		AADB2C90091 AADB2C90107 AADB2C90110 AADB2C90111 AADB2C90114 AADB2C90115 AADB2C90117 AADB2C90118
		AADB2C90120 AADB2C90128 AADB2C90129 AADB2C90182 AADB2C90183 AADB2C90184 AADB2C90208 AADB2C90244
		AADB2C90272 AADB2C90273 AADB2C90279 AADB2C90287 AADB2C90289 AADB2C99059
		AADSTS50000 AADSTS50011 AADSTS50020 AADSTS50034 AADSTS50058 AADSTS50148 AADSTS50173 AADSTS65004
		AADSTS70000 AADSTS70003 AADSTS70008 AADSTS70011 AADSTS90023 AADSTS500113 AADSTS501481
		AADSTS700016 AADSTS700054 AADSTS900144 AADSTS7000215 AADSTS7000218 AADSTS9002325
		AADSTS700027 AADSTS700021 AADSTS700024 AADSTS70021 AADSTS700211 AADSTS700212 AADSTS700213 AADSTS700226`) {
		m[c] = true
	}
	return m
}()

// countCallbackError counts a failed callback by cause.
func countCallbackError(cause string) {
	if !knownCodes[cause] {
		switch {
		case strings.HasPrefix(cause, "AADB2C"):
			cause = "AADB2C_other"
		case strings.HasPrefix(cause, "AADSTS"):
			cause = "AADSTS_other"
		default:
			cause = "other"
		}
	}
	metrics.callbackErrors.WithLabelValues(cause).Inc()
}

// countFetch counts a request to the provider and its latency.
func countFetch(kind string, start time.Time, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	metrics.fetches.WithLabelValues(kind, result).Inc()
	metrics.fetchSeconds.WithLabelValues(kind).Observe(time.Since(start).Seconds())
}
