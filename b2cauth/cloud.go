package b2cauth

import (
	"cmp"
	"context"
	"net"
	"net/url"
	"slices"
	"strings"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/credentials"
)

// Which Microsoft cloud a provider is in, read once from its sign-in
// host: where the app's Microsoft Graph token comes from, where Graph is,
// and the audience a managed identity's token is asked for when it serves
// as a federated credential. Hosts and audiences from Microsoft's
// national-cloud and workload-identity pages (testdata/fixtures/clouds.md).

// cloud is one Microsoft cloud.
type cloud struct {
	login    []string // its identity platform's sign-in hosts
	graph    string   // Microsoft Graph's root
	exchange string   // the token-exchange audience of federated credentials
}

var (
	globalCloud = cloud{[]string{"login.microsoftonline.com"}, "https://graph.microsoft.com", credentials.TokenExchangeAudience}
	clouds      = []cloud{
		globalCloud,
		// Azure US Government; its DoD tenants' Graph is
		// dod-graph.microsoft.us, which their metadata's msgraph_host names.
		{[]string{"login.microsoftonline.us"}, "https://graph.microsoft.us", "api://AzureADTokenExchangeUSGov"},
		// Microsoft Azure operated by 21Vianet.
		{[]string{"login.partner.microsoftonline.cn", "login.chinacloudapi.cn"}, "https://microsoftgraph.chinacloudapi.cn", "api://AzureADTokenExchangeChina"},
	}
)

// cloudOf is the cloud of a sign-in host: a national cloud's own host, else
// the global cloud (External ID's *.ciamlogin.com, B2C, a custom domain).
func cloudOf(host string) cloud {
	c, _ := findCloud(host)
	return c
}

// isEntraLoginHost tells Entra ID's sign-in host, in any cloud.
func isEntraLoginHost(host string) bool {
	_, ok := findCloud(host)
	return ok
}

// findCloud is the cloud whose sign-in host this is, if one is.
func findCloud(host string) (cloud, bool) {
	host = strings.ToLower(host)
	for _, c := range clouds {
		if slices.Contains(c.login, host) {
			return c, true
		}
	}
	return globalCloud, false
}

// configuredCloud is the cloud of the configured provider's host: the
// issuer's, else External ID's (global).
func (h *Handler) configuredCloud() cloud {
	if u, err := url.Parse(h.Issuer); h.Issuer != "" && err == nil {
		return cloudOf(u.Hostname())
	}
	return globalCloud
}

// graphHosts are where the app's Graph token comes from and where Graph
// is, given graph_login and graph_endpoint override each. On Azure AD B2C:
// the global cloud's (user flows issue no Graph token). Elsewhere: the
// provider's own sign-in host (the token is asked at the user's tenant,
// not at a multi-tenant metadata's organizations or common), and Graph at
// the metadata's msgraph_host, else the Graph of the issuer's cloud.
func (h *Handler) graphHosts(ctx context.Context) (login, endpoint string, err error) {
	login, endpoint = "https://"+globalCloud.login[0], globalCloud.graph
	if !h.platform.b2c && (h.GraphLogin == "" || h.GraphEndpoint == "") {
		p, _ := h.idp.provider("")
		d, err := p.Get(ctx)
		if err != nil {
			return "", "", err
		}
		iss, err := url.Parse(d.Meta.Issuer)
		if err != nil || iss.Host == "" {
			return "", "", &url.Error{Op: "parse", URL: d.Meta.Issuer, Err: err}
		}
		login, endpoint = iss.Scheme+"://"+iss.Host, cloudOf(iss.Hostname()).graph
		if host := d.Meta.MSGraphHost; host != "" && validHost(host) {
			scheme := "https"
			if loopback(iss.Hostname()) { // a local emulator, which plays Graph too
				scheme = iss.Scheme
			}
			endpoint = scheme + "://" + host
		}
	}
	return cmp.Or(h.GraphLogin, login), cmp.Or(h.GraphEndpoint, endpoint), nil
}

// loopback tells a loopback host: localhost or a loopback address.
func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
