package b2cemulator_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

const (
	emulatorTenant = "0d5a8b3c-1111-4222-8333-944455556666"
	securityGroup  = "0f4c2d5e-0000-4000-8000-00000000a11a"
	unifiedGroup   = "7e4a0c1d-0000-4000-8000-00000000c33c"
)

// graphCalls is an app with a Graph token for the emulator's tenant.
type graphCalls struct {
	t     *testing.T
	base  string
	token string
}

func graphApp(t *testing.T, flavor string) *graphCalls {
	c := startEmulator(t, `flavor `+flavor+`
		client graph-app s3cret {
			graph_permission User.Read.All GroupMember.Read.All
		}
		group `+securityGroup+` Staff {
			member ada@contoso.example
		}
		group `+unifiedGroup+` Team {
			type microsoft365
			member ada@contoso.example
		}`)
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {"graph-app"}, "client_secret": {"s3cret"}, "scope": {"https://graph.microsoft.com/.default"}}
	req, _ := http.NewRequest(http.MethodPost, c.base+"/"+emulatorTenant+"/oauth2/v2.0/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	status, body := doJSON(t, req)
	token, _ := body["access_token"].(string)
	if status != 200 || token == "" {
		t.Fatalf("Graph token: %d %v", status, body)
	}
	return &graphCalls{t: t, base: c.base, token: token}
}

// call sends a Graph request and returns its status, error code and the
// IDs it lists (strings, or objects' id).
func (g *graphCalls) call(method, path, body string, header http.Header) (int, string, []string) {
	req, _ := http.NewRequest(method, g.base+path, strings.NewReader(body))
	req.Header = header.Clone()
	if req.Header == nil {
		req.Header = http.Header{}
	}
	req.Header.Set("Authorization", "Bearer "+g.token)
	req.Header.Set("Content-Type", "application/json")
	status, out := doJSON(g.t, req)
	code := ""
	if e, ok := out["error"].(map[string]any); ok {
		code, _ = e["code"].(string)
	}
	var ids []string
	values, _ := out["value"].([]any)
	for _, v := range values {
		switch v := v.(type) {
		case string:
			ids = append(ids, v)
		case map[string]any:
			ids = append(ids, v["id"].(string))
		}
	}
	return status, code, ids
}

// TestGraphAnswersAsGraphDoes: the emulator's Graph refuses what Graph
// refuses (an OData cast without ConsistencyLevel: eventual and
// $count=true; in a B2C tenant always, advanced queries being unavailable
// there), requires securityEnabledOnly, and tells security groups from
// Microsoft 365 groups.
func TestGraphAnswersAsGraphDoes(t *testing.T) {
	users := "/v1.0/users/ada@contoso.example"
	advanced := http.Header{"Consistencylevel": {"eventual"}}
	for _, flavor := range []string{"b2c", "entra_id"} {
		g := graphApp(t, flavor)
		if status, code, _ := g.call("GET", users+"/transitiveMemberOf/microsoft.graph.group?$select=id", "", nil); status != 400 || code != "Request_UnsupportedQuery" {
			t.Errorf("%s: an OData cast without ConsistencyLevel: %d %s", flavor, status, code)
		}
		status, code, ids := g.call("GET", users+"/transitiveMemberOf/microsoft.graph.group?$select=id&$count=true", "", advanced)
		if flavor == "b2c" && (status != 400 || code != "Request_UnsupportedQuery") {
			t.Errorf("b2c: an advanced query answered: %d %s", status, code)
		}
		if flavor == "entra_id" && (status != 200 || len(ids) != 2) {
			t.Errorf("entra_id: an advanced query with its header: %d %s %v", status, code, ids)
		}
		if status, _, ids := g.call("GET", users+"/transitiveMemberOf?$select=id", "", nil); status != 200 || len(ids) != 2 {
			t.Errorf("%s: transitiveMemberOf: %d %v, want both groups", flavor, status, ids)
		}
		if status, code, _ := g.call("POST", users+"/getMemberGroups", `{}`, nil); status != 400 || code == "" {
			t.Errorf("%s: getMemberGroups without securityEnabledOnly: %d %s", flavor, status, code)
		}
		if status, _, ids := g.call("POST", users+"/getMemberGroups", `{"securityEnabledOnly":true}`, nil); status != 200 || !slices.Equal(ids, []string{securityGroup}) {
			t.Errorf("%s: security groups: %d %v, want Staff alone", flavor, status, ids)
		}
		if status, _, ids := g.call("POST", users+"/getMemberGroups", `{"securityEnabledOnly":false}`, nil); status != 200 || len(ids) != 2 {
			t.Errorf("%s: every group: %d %v", flavor, status, ids)
		}
		if status, _, ids := g.call("POST", users+"/checkMemberGroups", `{"groupIds":["`+unifiedGroup+`","00000000-0000-4000-8000-000000000000"]}`, nil); status != 200 || !slices.Equal(ids, []string{unifiedGroup}) {
			t.Errorf("%s: checkMemberGroups: %d %v", flavor, status, ids)
		}
		many := `{"groupIds":["` + strings.Repeat(securityGroup+`","`, 20) + securityGroup + `"]}`
		if status, _, _ := g.call("POST", users+"/checkMemberGroups", many, nil); status != 400 {
			t.Errorf("%s: checkMemberGroups with 21 IDs: %d", flavor, status)
		}
	}
}
