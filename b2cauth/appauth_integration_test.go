package b2cauth_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/caddy-b2c/caddy-b2c/internal/testcaddy"
)

const tasksAPI = "7b1c0a52-3f4e-4d6a-9b8c-2e1f0a3d4c5b"

// appOnlyToken asks the emulator's token endpoint for an app-only token
// (client credentials) for the tasks API.
func appOnlyToken(t *testing.T, tokenEndpoint, clientID, secret string) string {
	t.Helper()
	resp, err := http.PostForm(tokenEndpoint, url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID},
		"client_secret": {secret}, "scope": {"https://contoso.onmicrosoft.com/tasks/.default"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || resp.StatusCode != 200 || tr.AccessToken == "" {
		t.Fatalf("client credentials: %d %v", resp.StatusCode, err)
	}
	return tr.AccessToken
}

// TestAppOnlyCallersWithTheEmulator: a daemon gets an app-only token from
// the emulator with the client-credentials grant — the API's app role in
// `roles` on Entra ID, in `scp` on B2C, as each platform issues them — and
// b2c_auth admits it with require_roles (Entra) or require_scopes (B2C), as
// an app; a daemon with another role gets 403, and one with none 401 (a
// token without a permission is no credential).
func TestAppOnlyCallersWithTheEmulator(t *testing.T) {
	for _, tc := range []struct {
		flavor, provider, require, tokenPath string
	}{
		{"entra_id", "issuer IDP/contoso.onmicrosoft.com/v2.0", "require_roles Tasks.Read.All", "/contoso.onmicrosoft.com/oauth2/v2.0/token"},
		{"b2c", "authority IDP/contoso.onmicrosoft.com\n\t\tpolicy B2C_1_susi", "require_scopes Tasks.Read.All", "/contoso.onmicrosoft.com/B2C_1_susi/oauth2/v2.0/token"},
	} {
		t.Run(tc.flavor, func(t *testing.T) {
			idp := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
			base := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
			testcaddy.Start(t, testcaddy.Globals(t.TempDir())+fmt.Sprintf(`
%[1]s {
	b2c_emulator {
		flavor %[3]s
		client daemon-1 s3cret
		client daemon-2 s3cret
		client daemon-3 s3cret
		api https://contoso.onmicrosoft.com/tasks %[4]s {
			scopes Tasks.Read
			app_role Tasks.Read.All daemon-1
			app_role Tasks.Write.All daemon-2
		}
	}
}
%[2]s {
	b2c_auth {
		%[5]s
		client_id %[4]s
		%[6]s
	}
	respond "type={http.auth.user.type} id={http.auth.user.id} roles={http.auth.user.roles} scp={http.auth.user.scp}"
}
`, idp, base, tc.flavor, tasksAPI, strings.ReplaceAll(tc.provider, "IDP", idp), tc.require))
			call := func(token string) (int, string) {
				req, _ := http.NewRequest(http.MethodGet, base+"/tasks", nil)
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(body)
			}
			status, body := call(appOnlyToken(t, idp+tc.tokenPath, "daemon-1", "s3cret"))
			if status != 200 || !strings.Contains(body, "type=app") || !strings.Contains(body, "Tasks.Read.All") {
				t.Errorf("daemon with the app role: %d %q", status, body)
			}
			if status, body := call(appOnlyToken(t, idp+tc.tokenPath, "daemon-2", "s3cret")); status != http.StatusForbidden {
				t.Errorf("daemon with another app role: %d %q", status, body)
			}
			if status, body := call(appOnlyToken(t, idp+tc.tokenPath, "daemon-3", "s3cret")); status != http.StatusUnauthorized {
				t.Errorf("daemon with no permission: %d %q", status, body)
			}
		})
	}
}

// TestGroupsAndRolesFromTheEmulator: an Entra ID user's ID token carries
// the app's roles assigned to them and their groups, which the rules use;
// past groups_overage the token carries the overage indicator instead of
// the groups.
func TestGroupsAndRolesFromTheEmulator(t *testing.T) {
	const staff = "0f4c2d5e-0000-4000-8000-00000000a11a"
	base, b := flavorSite(t, fmt.Sprintf(`flavor entra_id
		group %s Staff {
			member ada@contoso.example
		}
		group 1a2b3c4d-0000-4000-8000-00000000b22b Readers {
			member ada@contoso.example
		}`, staff),
		"issuer IDP/contoso.onmicrosoft.com/v2.0\n\t\tallow groups "+staff)
	if landed := signInAs(t, b, base+"/", "ada@contoso.example"); landed.StatusCode != 200 {
		t.Fatalf("a member of the allowed group: %d %q", landed.StatusCode, landed.Body)
	}
	me := b.Get(base + "/.auth/me").Body
	if !strings.Contains(me, `"typ":"groups","val":"`+staff+`"`) {
		t.Errorf("/.auth/me lacks the groups: %s", me)
	}

	over, ob := flavorSite(t, fmt.Sprintf("flavor entra_id\n\t\tgroups_overage 1\n\t\tgroup %s Staff {\n\t\t\tmember ada@contoso.example\n\t\t}\n\t\tgroup 1a2b3c4d-0000-4000-8000-00000000b22b Readers {\n\t\t\tmember ada@contoso.example\n\t\t}", staff),
		"issuer IDP/contoso.onmicrosoft.com/v2.0")
	signInAs(t, ob, over+"/", "ada@contoso.example")
	me = ob.Get(over + "/.auth/me").Body
	if strings.Contains(me, `"typ":"groups"`) || !strings.Contains(me, "_claim_sources") || !strings.Contains(me, "getMemberObjects") {
		t.Errorf("past the overage threshold: %s", me)
	}
}

// graphSite runs the emulator (with Microsoft Graph) and a site whose rule
// admits only the Staff group, with groups from Graph.
func graphSite(t *testing.T, flavor, emulatorExtra, clientExtra, provider, authExtra string) (string, string) {
	idp := fmt.Sprintf("http://127.0.0.1:%d", testcaddy.FreePort(t))
	base := fmt.Sprintf("http://localhost:%d", testcaddy.FreePort(t))
	dir := t.TempDir()
	logFile := filepath.Join(dir, "caddy.log")
	globals := strings.Replace(testcaddy.Globals(dir), "level ERROR", fmt.Sprintf("level ERROR\n\t\toutput file %q", logFile), 1)
	testcaddy.Start(t, globals+fmt.Sprintf(`
%[1]s {
	b2c_emulator {
		flavor %[3]s
		tenant_id %[8]s
		client %[4]s s3cret {
			redirect_uri %[2]s/.auth/login/b2c/callback
			%[5]s
		}
		user ada@contoso.example Passw0rd!
		user bob@contoso.example Passw0rd!
		group %[9]s Staff {
			member ada@contoso.example
		}
		%[6]s
	}
}
%[2]s {
	b2c_auth {
		%[7]s
		client_id %[4]s
		client_secret s3cret
		allow groups %[9]s
		%[10]s
	}
	respond "groups={http.auth.user.groups}"
}
`, idp, base, flavor, clientID, clientExtra, emulatorExtra, strings.ReplaceAll(provider, "IDP", idp), emulatorTenantID, staffGroup, strings.ReplaceAll(authExtra, "IDP", idp)))
	return base, logFile
}

const staffGroup = "0f4c2d5e-0000-4000-8000-00000000a11a"

// onB2C is a B2C authority at the emulator, whose Graph stands in for the
// global cloud's (B2C's Graph defaults).
const onB2C = "authority IDP/contoso.onmicrosoft.com\n\t\tpolicy B2C_1_susi\n\t\tgraph_endpoint IDP\n\t\tgraph_login IDP"

// TestGroupsFromMicrosoftGraph: on B2C (no groups claim), groups graph
// reads the groups from Graph with the app's credentials at the tenant's
// own endpoint, with calls a B2C tenant answers (no OData cast, which the
// emulator's B2C Graph refuses as B2C does), through throttling: a member
// is admitted, a non-member refused; without the Graph permission, a rule
// on groups fails closed and the log says which permissions to grant.
func TestGroupsFromMicrosoftGraph(t *testing.T) {
	var many strings.Builder // Ada is in 150 groups, one of them a Microsoft 365 group
	for i := range 148 {
		fmt.Fprintf(&many, "\t\tgroup 00000000-0000-4000-8000-%012d G%d {\n\t\t\tmember ada@contoso.example\n\t\t}\n", i, i)
	}
	many.WriteString("\t\tgroup " + teamGroup + " Team {\n\t\t\ttype microsoft365\n\t\t\tmember ada@contoso.example\n\t\t}\n")
	// The rule names Staff: b2c_auth asks about Staff alone (checkMemberGroups).
	base, _ := graphSite(t, "b2c", many.String()+"\t\tgraph_throttle 1", "graph_permission GroupMember.Read.All", onB2C, "groups graph")
	if landed := signInAs(t, testcaddy.NewBrowser(t), base+"/", "ada@contoso.example"); landed.StatusCode != 200 || landed.Body != "groups="+staffGroup {
		t.Errorf("a member of Staff (150 groups, after a 429): %d %q", landed.StatusCode, landed.Body)
	}
	if landed := signInAs(t, testcaddy.NewBrowser(t), base+"/", "bob@contoso.example"); landed.StatusCode != http.StatusForbidden {
		t.Errorf("not a member: %d %q", landed.StatusCode, landed.Body)
	}

	// keep_groups all: the security groups (getMemberGroups), not Team.
	security, _ := graphSite(t, "b2c", many.String(), "graph_permission GroupMember.Read.All", onB2C, "groups graph\n\t\tkeep_groups all")
	landed := signInAs(t, testcaddy.NewBrowser(t), security+"/", "ada@contoso.example")
	if kept := strings.Split(strings.TrimPrefix(landed.Body, "groups="), ","); landed.StatusCode != 200 || len(kept) != 149 || slices.Contains(kept, teamGroup) || !slices.Contains(kept, staffGroup) {
		t.Errorf("security groups: %d, %d groups, Team kept: %v", landed.StatusCode, len(kept), slices.Contains(kept, teamGroup))
	}
	// graph_groups all: every type, through transitiveMemberOf (paged by 100).
	all, _ := graphSite(t, "b2c", many.String(), "graph_permission GroupMember.Read.All", onB2C, "groups graph\n\t\tkeep_groups all\n\t\tgraph_groups all")
	landed = signInAs(t, testcaddy.NewBrowser(t), all+"/", "ada@contoso.example")
	if kept := strings.Split(strings.TrimPrefix(landed.Body, "groups="), ","); landed.StatusCode != 200 || len(kept) != 150 || !slices.Contains(kept, teamGroup) {
		t.Errorf("every group type: %d, %d groups, Team kept: %v", landed.StatusCode, len(kept), slices.Contains(kept, teamGroup))
	}

	denied, logFile := graphSite(t, "b2c", "", "", onB2C, "groups graph")
	landed = signInAs(t, testcaddy.NewBrowser(t), denied+"/", "ada@contoso.example")
	if landed.StatusCode != http.StatusServiceUnavailable || !strings.Contains(landed.Body, "cannot check your access") {
		t.Errorf("Graph refusing: %d %q, want the fail-closed page", landed.StatusCode, landed.Body)
	}
	if data, _ := os.ReadFile(logFile); !strings.Contains(string(data), "User.Read.All and GroupMember.Read.All") || !strings.Contains(string(data), "Authorization_RequestDenied") {
		t.Errorf("the log does not say what to grant:\n%s", data)
	}
}

const teamGroup = "7e4a0c1d-0000-4000-8000-00000000c33c"

// TestGraphOfTheProvidersCloud: on Entra ID, with neither graph_login nor
// graph_endpoint, the overage indicator sends b2c_auth for a Graph token to
// the provider's own sign-in host, at the user's tenant, and to Graph at
// the metadata's msgraph_host (the emulator names itself there).
func TestGraphOfTheProvidersCloud(t *testing.T) {
	entra, _ := graphSite(t, "entra_id", "multi_tenant\n\t\tgroups_overage 1\n\t\tgroup 1a2b3c4d-0000-4000-8000-00000000b22b Readers {\n\t\t\tmember ada@contoso.example\n\t\t}",
		"graph_permission GroupMember.Read.All", "issuer IDP/organizations/v2.0\n\t\ttenants *", "")
	if landed := signInAs(t, testcaddy.NewBrowser(t), entra+"/", "ada@contoso.example"); landed.StatusCode != 200 || !strings.Contains(landed.Body, staffGroup) {
		t.Errorf("Entra ID with the overage indicator: %d %q", landed.StatusCode, landed.Body)
	}
}
