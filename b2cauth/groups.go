package b2cauth

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/graph"
	"github.com/caddy-b2c/caddy-b2c/b2cauth/session"
	"github.com/caddy-b2c/caddy-b2c/internal/guid"
)

// Groups the token cannot hold come from Microsoft Graph: always with
// `groups graph` (Azure AD B2C's tokens carry none), and with `groups
// token` when the token carries Entra's overage indicator instead of the
// groups. A session keeps those the rules name (keep_groups named), or all
// of them up to maxKeptGroups (keep_groups all), read again at each renewal.
// When Graph fails, a rule that needs groups fails closed.

// maxKeptGroups bounds the groups a session keeps: 200 object IDs are
// about 7 KB, two cookies' worth.
const maxKeptGroups = 200

// namesGroups tells whether an allow or deny rule looks at groups.
func namesGroups(allow, deny []Rule) bool {
	for _, r := range append(append([]Rule{}, allow...), deny...) {
		if r.Claim == "groups" {
			return true
		}
	}
	return false
}

// namedGroups are the group IDs the rules name, when a session keeps only
// those (keep_groups named) and every groups pattern is a literal ID: Graph
// is then asked about those alone (checkMemberGroups). Else nil.
func namedGroups(keep string, allow, deny []Rule) []string {
	if keep == "all" {
		return nil
	}
	var ids []string
	for _, r := range append(append([]Rule{}, allow...), deny...) {
		if r.Claim != "groups" {
			continue
		}
		for _, p := range r.Patterns {
			if strings.Contains(p, "*") {
				return nil
			}
			if !slices.Contains(ids, strings.ToLower(p)) {
				ids = append(ids, strings.ToLower(p))
			}
		}
	}
	return ids
}

// hasGroupsOverage tells whether a token says its groups are elsewhere.
func hasGroupsOverage(claims map[string]any) bool {
	names, ok := claims["_claim_names"].(map[string]any)
	if !ok {
		return claims["hasgroups"] != nil
	}
	_, ok = names["groups"]
	return ok
}

// groupSource gives identities the groups their tokens cannot hold, from
// Microsoft Graph (always with groups graph, else when a token carries
// Entra's overage indicator), and keeps of them what keep_groups says.
type groupSource struct {
	graph       *graph.Client // nil without the app's credentials
	always      bool          // groups graph
	keepAll     bool          // keep_groups all
	allow, deny []Rule
	bearer      *bearerGroups
	now         func() time.Time
	logger      *zap.Logger
}

// wanted tells whether this identity's groups must come from Graph.
func (g *groupSource) wanted(claims map[string]any) bool {
	return g.always || (hasGroupsOverage(claims) && (namesGroups(g.allow, g.deny) || g.keepAll))
}

// errNoGraph is groups that only Graph has, without the client_secret that
// gets a Graph token.
var errNoGraph = errors.New("the token carries the groups overage indicator, and without the app's credentials (client_secret, client_certificate or client_assertion) b2c_auth cannot read the groups from Microsoft Graph")

// graphTenant is the tenant to ask Graph about: the token's tid, else the
// tenant ID in its issuer (B2C's https://<name>.b2clogin.com/<tenant ID>/v2.0/).
func graphTenant(values map[string]string) string {
	if tid := values["tid"]; tid != "" {
		return tid
	}
	return guid.Find(values["iss"])
}

// read reads the identity's groups from Graph and keeps what the
// configuration says. A refusal is logged with what to fix.
func (g *groupSource) read(ctx context.Context, values map[string]string) ([]string, error) {
	user := values["oid"]
	if user == "" {
		user = values["sub"]
	}
	if g.graph == nil {
		g.logger.Error("groups could not be read: " + errNoGraph.Error())
		return nil, errNoGraph
	}
	ids, err := g.graph.MemberGroups(ctx, graphTenant(values), user)
	if err != nil {
		var ge *graph.Error
		if errors.As(err, &ge) {
			g.logger.Error("groups could not be read from Microsoft Graph: "+ge.Hint, zap.Int("status", ge.Status), zap.String("code", ge.Code))
		} else {
			g.logger.Error("groups could not be read from Microsoft Graph", zap.Error(err))
		}
		return nil, err
	}
	return g.kept(ids), nil
}

// kept are the groups a session keeps: those the rules name, or up
// to maxKeptGroups of them.
func (g *groupSource) kept(ids []string) []string {
	if g.keepAll {
		if len(ids) > maxKeptGroups {
			g.logger.Warn("the user is in more groups than a session keeps; the rest are left out", zap.Int("groups", len(ids)), zap.Int("kept", maxKeptGroups))
			ids = ids[:maxKeptGroups]
		}
		return ids
	}
	var out []string
	for _, id := range ids {
		if (Rule{Claim: "groups"}).namedBy(g.allow, g.deny, id) {
			out = append(out, id)
		}
	}
	return out
}

// namedBy tells whether a groups rule of allow or deny matches the value.
func (Rule) namedBy(allow, deny []Rule, value string) bool {
	for _, r := range append(append([]Rule{}, allow...), deny...) {
		if r.Claim == "groups" && r.matches(map[string]any{"groups": value}) {
			return true
		}
	}
	return false
}

// forSession puts the Graph groups of a new or renewed session in it
// (beside the claims the ID token lacks), or marks them unknown. A renewal
// that cannot read them keeps those the session had.
func (g *groupSource) forSession(ctx context.Context, s *session.Session, id *identity, previous *session.Session) {
	s.GroupsUnknown = false
	if id == nil || !g.wanted(id.claims) {
		return
	}
	groups, err := g.read(ctx, id.values)
	if err != nil {
		s.GroupsUnknown = previous == nil || previous.GroupsUnknown
		return
	}
	s.UserInfo = maps.Clone(s.UserInfo) // the previous session's map is shared
	if s.UserInfo == nil {
		s.UserInfo = map[string]any{}
	}
	list := make([]any, len(groups))
	for i, g := range groups {
		list[i] = g
	}
	s.UserInfo["groups"] = list
}

// recoverGroups reads again, from Graph, the groups of a session that
// signed in (or renewed) while Graph failed, and keeps them in it: the
// user gets in when Graph recovers, without waiting for a renewal. It
// returns the identity with its groups, or nil while Graph still fails —
// the Graph client asks once per user at a time and remembers a failure,
// so requests meanwhile cost no call.
func (h *Handler) recoverGroups(w http.ResponseWriter, r *http.Request, id *identity) *identity {
	if id.session == nil {
		return nil
	}
	s := *id.session
	payload, err := s.Payload()
	if err != nil {
		return nil
	}
	h.groups.forSession(r.Context(), &s, orNil(h.identity(payload)), id.session)
	if s.GroupsUnknown {
		return nil
	}
	recovered, ok := h.identity(withUserInfo(payload, s.UserInfo))
	if !ok || h.sessions.write(w, r, &s, recovered) != nil {
		return nil
	}
	stateOf(r).setSession(h.purpose, recovered)
	return recovered
}

// bearerGroups are the Graph groups of bearer identities, cached briefly
// by tenant and user.
type bearerGroups struct {
	mu      sync.Mutex
	entries map[string]cachedGroups
}

type cachedGroups struct {
	groups  []string
	expires time.Time
}

const bearerGroupsTTL = 5 * time.Minute

// forBearer adds a bearer identity's groups from Graph when they
// must come from there; an error when Graph fails.
func (g *groupSource) forBearer(ctx context.Context, id *identity) error {
	if !g.wanted(id.claims) {
		return nil
	}
	key := graphTenant(id.values) + "/" + id.id
	g.bearer.mu.Lock()
	c, ok := g.bearer.entries[key]
	g.bearer.mu.Unlock()
	if !ok || g.now().After(c.expires) {
		groups, err := g.read(ctx, id.values)
		if err != nil {
			return err
		}
		c = cachedGroups{groups, g.now().Add(bearerGroupsTTL)}
		g.bearer.mu.Lock()
		if len(g.bearer.entries) >= 4096 {
			clear(g.bearer.entries)
		}
		g.bearer.entries[key] = c
		g.bearer.mu.Unlock()
	}
	list := make([]any, len(c.groups))
	for i, g := range c.groups {
		list[i] = g
	}
	id.claims["groups"] = list
	id.values["groups"] = strings.Join(c.groups, ",")
	return nil
}

// groupsUnknownPage says the site cannot check the user's access now: the
// rules need groups, and Microsoft Graph could not give them. No detail;
// the log says what to fix.
var groupsUnknownPage = pageData{Title: "Access cannot be checked", Message: "This site cannot check your access right now. Try again later.", Link: "/", LinkText: "Home"}

// refuseUnknownGroups answers a request whose rules need groups that could
// not be read.
func refuseUnknownGroups(w http.ResponseWriter, r *http.Request) error {
	countRequest(outcome503)
	w.Header().Set("Retry-After", "60")
	return fail(w, r, http.StatusServiceUnavailable, groupsUnknownPage.Title, groupsUnknownPage.Message, errors.New("groups unknown: Microsoft Graph failed"))
}
