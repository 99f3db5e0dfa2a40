package b2cauth

import (
	"context"
	"strings"
	"testing"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/credentials"
)

// TestCloudsAsMicrosoftNamesThem: each sign-in host's Graph and
// token-exchange audience (testdata/fixtures/graph-and-clouds.md).
func TestCloudsAsMicrosoftNamesThem(t *testing.T) {
	for host, want := range map[string][2]string{
		"login.microsoftonline.com":        {"https://graph.microsoft.com", "api://AzureADTokenExchange"},
		"contoso.ciamlogin.com":            {"https://graph.microsoft.com", "api://AzureADTokenExchange"},
		"LOGIN.MICROSOFTONLINE.US":         {"https://graph.microsoft.us", "api://AzureADTokenExchangeUSGov"},
		"login.chinacloudapi.cn":           {"https://microsoftgraph.chinacloudapi.cn", "api://AzureADTokenExchangeChina"},
		"login.partner.microsoftonline.cn": {"https://microsoftgraph.chinacloudapi.cn", "api://AzureADTokenExchangeChina"},
	} {
		if c := cloudOf(host); c.graph != want[0] || c.exchange != want[1] {
			t.Errorf("%s: %s %s, want %v", host, c.graph, c.exchange, want)
		}
	}
}

// TestAKSExampleInEveryCloud: the AKS example's issuer, built from the
// variables the workload identity webhook sets, is the same whether
// AZURE_AUTHORITY_HOST ends with a slash or not, and a managed identity's
// token is asked for the issuer's cloud's audience unless one is given.
func TestAKSExampleInEveryCloud(t *testing.T) {
	const tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	t.Setenv("AZURE_TENANT_ID", tenant)
	t.Setenv("AZURE_CLIENT_ID", "app")
	for _, host := range []string{"https://login.microsoftonline.us/", "https://login.microsoftonline.us"} {
		t.Setenv("AZURE_AUTHORITY_HOST", host)
		h := &Handler{Issuer: "{env.AZURE_AUTHORITY_HOST}/{env.AZURE_TENANT_ID}/v2.0", ClientID: "{env.AZURE_CLIENT_ID}",
			ClientAssertion: &ClientAssertion{Kind: "managed_identity", Value: "mi-client"}, CookieSecret: []string{testCookieSecret}}
		if err := provision(t, h); err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		if got := h.metadataURL(""); got != "https://login.microsoftonline.us/"+tenant+"/v2.0/.well-known/openid-configuration" {
			t.Errorf("AZURE_AUTHORITY_HOST=%s: metadata at %s", host, got)
		}
		if mi, ok := h.idp.credential.(*credentials.ManagedIdentity); !ok || mi.Audience != "api://AzureADTokenExchangeUSGov" {
			t.Errorf("the managed identity's audience in the US Government cloud: %+v", h.idp.credential)
		}
	}
	h := &Handler{Issuer: "https://login.microsoftonline.us/" + tenant + "/v2.0", ClientID: "app", CookieSecret: []string{testCookieSecret},
		ClientAssertion: &ClientAssertion{Kind: "managed_identity", Value: "mi-client", Audience: "api://custom"}}
	if err := provision(t, h); err != nil {
		t.Fatal(err)
	}
	if mi := h.idp.credential.(*credentials.ManagedIdentity); mi.Audience != "api://custom" {
		t.Errorf("an audience given: %s", mi.Audience)
	}
	// B2C keeps the global cloud's Graph, whatever it is told by no one.
	b2c := &Handler{Tenant: "contoso", Policy: "B2C_1_susi", ClientID: "app", ClientSecret: "s", CookieSecret: []string{testCookieSecret}}
	if err := provision(t, b2c); err != nil {
		t.Fatal(err)
	}
	if login, graph, err := b2c.graphHosts(context.Background()); err != nil || login != "https://login.microsoftonline.com" || graph != "https://graph.microsoft.com" {
		t.Errorf("B2C's Graph: %s %s %v", login, graph, err)
	}
}

// TestServiceFabricAndArcAreRefusedAtStart: their managed identity
// endpoints are not App Service's or IMDS's; a start-up error says so.
func TestServiceFabricAndArcAreRefusedAtStart(t *testing.T) {
	t.Setenv("IDENTITY_ENDPOINT", "https://10.0.0.4:2377/metadata/identity/oauth2/token")
	t.Setenv("IDENTITY_HEADER", "h")
	t.Setenv("IDENTITY_SERVER_THUMBPRINT", "AB12")
	h := &Handler{Issuer: "https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0", ClientID: "app", CookieSecret: []string{testCookieSecret},
		ClientAssertion: &ClientAssertion{Kind: "managed_identity", Value: "mi-client"}}
	if err := provision(t, h); err == nil || !strings.Contains(err.Error(), "Service Fabric") {
		t.Errorf("Service Fabric: %v", err)
	}
}
