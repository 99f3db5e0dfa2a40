package b2cemulator

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"

	"github.com/caddy-b2c/caddy-b2c/internal/portcheck"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/spf13/cobra"
)

// `caddy b2c emulator`: b2c_emulator on its own, for any app.

// Command is the `caddy b2c emulator` subcommand.
func Command() *cobra.Command {
	emulator := &cobra.Command{Use: "emulator", Short: "Runs a local B2C tenant", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var o emulatorOptions
			o.listen, _ = c.Flags().GetString("listen")
			o.tls, _ = c.Flags().GetBool("tls")
			o.trust, _ = c.Flags().GetBool("trust")
			o.tenant, _ = c.Flags().GetString("tenant")
			o.flavor, _ = c.Flags().GetString("flavor")
			o.config, _ = c.Flags().GetString("config")
			stop := make(chan os.Signal, 1)
			signal.Notify(stop, os.Interrupt)
			defer signal.Stop(stop)
			done := make(chan struct{})
			go func() { <-stop; close(done) }()
			return runEmulator(o, c.OutOrStdout(), done)
		}}
	emulator.Flags().String("listen", "127.0.0.1:9000", "address to listen on")
	emulator.Flags().Bool("tls", false, "serve HTTPS with Caddy's local CA (MSAL needs https)")
	emulator.Flags().Bool("trust", false, "with --tls: install Caddy's local CA in the system trust store")
	emulator.Flags().String("tenant", DemoTenant, "tenant name")
	emulator.Flags().String("flavor", FlavorB2C, "b2c, external_id or entra_id")
	emulator.Flags().String("config", "", "a file with more b2c_emulator options")
	return emulator
}

// emulatorOptions are `caddy b2c emulator`'s flags.
type emulatorOptions struct {
	listen, tenant, flavor, config string
	tls, trust                     bool
	adminKey                       string // made by runEmulator
}

// emulatorCaddyfile is the Caddyfile that runs the emulator on its own.
func emulatorCaddyfile(o emulatorOptions) (string, error) {
	extra := ""
	if o.config != "" {
		data, err := os.ReadFile(o.config)
		if err != nil {
			return "", err
		}
		extra = string(data)
	}
	host, port, err := net.SplitHostPort(o.listen)
	if err != nil {
		return "", fmt.Errorf("--listen: %v", err)
	}
	// Only the listener asked for: on the --listen host (every interface
	// only when it has none), HTTP/1.1 and 2, no HTTP→HTTPS redirect on
	// :80, and the system trust store untouched unless --trust.
	globals := "\tadmin off\n\tpersist_config off\n\tauto_https disable_redirects\n\tservers {\n\t\tprotocols h1 h2\n\t}\n"
	if !o.trust {
		globals += "\tskip_install_trust\n"
	}
	site := ""
	if host != "" {
		site += "\tbind " + host + "\n"
	}
	scheme := "http"
	if o.tls {
		scheme = "https"
		site += "\ttls internal\n"
	}
	if _, err := strconv.Atoi(port); err != nil {
		return "", fmt.Errorf("--listen: %q is not a port", port)
	}
	if o.adminKey != "" {
		extra = "\t\tadmin_key " + o.adminKey + "\n" + extra
	}
	return fmt.Sprintf("{\n%s}\n%s://%s {\n%s\tb2c_emulator {\n\t\ttenant %s\n\t\tflavor %s\n%s\n\t}\n}\n",
		globals, scheme, o.listen, site, o.tenant, o.flavor, extra), nil
}

// ClientSettings are the lines that point b2c_auth, MSAL and Microsoft's
// Flask sample at an emulator of the flavor at origin: a B2C authority
// with its user flow, or the identity platform's issuer.
func ClientSettings(flavor, origin, tenant string) string {
	authority := origin + "/" + tenant + ".onmicrosoft.com"
	host := strings.TrimPrefix(strings.TrimPrefix(origin, "https://"), "http://")
	tls := `              (MSAL needs https: run with --tls, and trust Caddy's local CA: --trust,
              or caddy trust; without it the system trust store is left alone)
`
	if flavor != FlavorB2C {
		return fmt.Sprintf(`b2c_auth:     issuer %s/v2.0  client_id %s
MSAL Python:  PublicClientApplication(client_id, authority="%s", validate_authority=False, ...)
MSAL.js/Node: auth: { authority: "%s", knownAuthorities: ["%s"] }
%s`, authority, DemoClientID, authority, authority, host, tls)
	}
	return fmt.Sprintf(`b2c_auth:     authority %s  policy B2C_1_susi  client_id %s
MSAL Python:  ConfidentialClientApplication(client_id, authority="%s/B2C_1_susi", validate_authority=False, ...)
MSAL.js/Node: auth: { authority: "%s/B2C_1_susi", knownAuthorities: ["%s"] }
%sFlask sample: authority_template = "%s/tfp/{tenant}.onmicrosoft.com/{user_flow}", b2c_tenant = "%s"
`, authority, DemoClientID, authority, authority, host, tls, origin, tenant)
}

// runEmulator runs the emulator until done is closed, after printing how
// to use it.
func runEmulator(o emulatorOptions, out io.Writer, done <-chan struct{}) error {
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	o.adminKey = hex.EncodeToString(key)
	caddyfile, err := emulatorCaddyfile(o)
	if err != nil {
		return err
	}
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
	if err != nil {
		return fmt.Errorf("emulator config: %v", err)
	}
	if err := portcheck.Unanswered(o.listen); err != nil {
		return fmt.Errorf("--listen %w", err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		return err
	}
	defer func() { _ = caddy.Stop() }()
	scheme := "http"
	if o.tls {
		scheme = "https"
	}
	origin := scheme + "://" + o.listen
	authority := origin + "/" + o.tenant + ".onmicrosoft.com"
	metadata := authority + "/B2C_1_susi/v2.0/.well-known/openid-configuration"
	if o.flavor != FlavorB2C {
		metadata = authority + "/v2.0/.well-known/openid-configuration"
	}
	fmt.Fprintf(out, `b2c_emulator is running (%s): a local test tenant, never for production.

  authority   %s
  metadata    %s
  demo client %s (no secret; redirect URIs %s)
  demo user   %s / %s
  mailbox     %s/emulator/mailbox (the verification codes of sign-up and password reset)
  admin key   %s (POST %s/emulator/rotate_keys with Authorization: Bearer <key>)

%s`, o.flavor, authority, metadata, DemoClientID, strings.Join(DemoRedirectURIs, " "),
		DemoUserEmail, DemoUserPassword, authority, o.adminKey, authority, ClientSettings(o.flavor, origin, o.tenant))
	<-done
	return nil
}
