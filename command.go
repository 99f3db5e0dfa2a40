package caddyb2c

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddyserver/certmagic"
	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/caddy-b2c/caddy-b2c/b2cauth"
	"github.com/caddy-b2c/caddy-b2c/b2cauth/credentials"
	"github.com/caddy-b2c/caddy-b2c/b2cauth/signouts"
	"github.com/caddy-b2c/caddy-b2c/b2cemulator"
	"github.com/caddy-b2c/caddy-b2c/internal/portcheck"
)

// `caddy b2c check|secret|emulator`, registered as Caddy's own
// `caddy hash-password` is, so every Caddy built with the plugin has them.
func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "b2c",
		Usage: "check [--config <file>] [--adapter <name>] | secret | certificate <cert.pem> <key.pem> [--client-id <id>] | emulator [--listen <addr>] [--tls [--trust]] [--tenant <name>] [--flavor b2c|external_id|entra_id] [--config <file>] | revoke --user <id> | --session <id> [--address <admin>]",
		Short: "Checks b2c_auth configurations, makes cookie secrets, explains certificate credentials, runs a local B2C, signs users out",
		Long: `
caddy b2c check [--config <file>] [--adapter caddyfile]
    For every b2c_auth in the config: resolve its placeholders, fetch each
    policy's metadata and keys, print the issuer and endpoints, ask the
    authorize endpoint about each site's redirect URI, and compare clocks.
    Exits non-zero on any problem.

caddy b2c secret
    Prints a new cookie_secret (base64 of 32 random bytes).

caddy b2c certificate <cert.pem> <key.pem> [--client-id <id>]
    Reads a certificate credential's files (what client_certificate takes),
    checks that the key is the certificate's, and prints its thumbprint
    (the SHA-1 the Entra admin center shows once it is uploaded), its
    validity, how to register it with the app (portal and Azure CLI) and
    the client_certificate line. Exits non-zero when the files do not
    belong together or the certificate has expired.

caddy b2c revoke --user <id> | --session <id> [--address localhost:2019 | --config <file> [--adapter caddyfile]]
    Signs a user out of every Caddy that shares the running config's
    storage, through the admin API (POST /b2c_auth/revoke): every session
    of theirs issued until now, and their bearer tokens issued until now,
    are refused within revocation_sync. <id> is what {http.auth.user.id}
    shows: the oid, else the sub. With --config, it writes to that
    config's storage itself, for a Caddy that is not running.

caddy b2c emulator [--listen 127.0.0.1:9000] [--tls [--trust]] [--tenant contoso]
                   [--flavor b2c|external_id|entra_id] [--config <file>]
    Runs b2c_emulator on its own: a local B2C (or External ID, Entra ID)
    tenant for any app. --config names a file with more b2c_emulator
    options (the inside of its block). It listens only where --listen
    says (127.0.0.1 by default; ":9000" for every interface), opens no
    other listener, and leaves the system trust store alone unless
    --trust. Prints the authority, how to point MSAL at it, its mailbox
    page and its admin key.`,
		CobraFunc: func(cmd *cobra.Command) {
			check := &cobra.Command{Use: "check", Short: "Checks every b2c_auth of a config against its provider", Args: cobra.NoArgs,
				RunE: func(c *cobra.Command, _ []string) error {
					file, _ := c.Flags().GetString("config")
					adapter, _ := c.Flags().GetString("adapter")
					problems, err := runCheck(c.Context(), file, adapter, c.OutOrStdout())
					if err != nil {
						return err
					}
					if problems > 0 {
						return fmt.Errorf("%d problem(s)", problems)
					}
					return nil
				}}
			check.Flags().String("config", "", "the config file")
			check.Flags().String("adapter", "", "its adapter (caddyfile for a Caddyfile)")
			secret := &cobra.Command{Use: "secret", Short: "Prints a new cookie_secret", Args: cobra.NoArgs,
				RunE: func(c *cobra.Command, _ []string) error {
					_, err := fmt.Fprintln(c.OutOrStdout(), newCookieSecret())
					return err
				}}
			certificate := &cobra.Command{Use: "certificate <cert.pem> <key.pem>", Short: "Explains a certificate credential and how to register it", Args: cobra.ExactArgs(2),
				RunE: func(c *cobra.Command, args []string) error {
					clientID, _ := c.Flags().GetString("client-id")
					return explainCertificate(args[0], args[1], clientID, time.Now(), c.OutOrStdout())
				}}
			certificate.Flags().String("client-id", "", "the app's client ID, for the az command")
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
			emulator.Flags().String("tenant", b2cemulator.DemoTenant, "tenant name")
			emulator.Flags().String("flavor", b2cemulator.FlavorB2C, "b2c, external_id or entra_id")
			emulator.Flags().String("config", "", "a file with more b2c_emulator options")
			revoke := &cobra.Command{Use: "revoke", Short: "Signs a user (or a session) out of every instance that shares the running config's storage", Args: cobra.NoArgs,
				RunE: func(c *cobra.Command, _ []string) error {
					file, _ := c.Flags().GetString("config")
					adapter, _ := c.Flags().GetString("adapter")
					user, _ := c.Flags().GetString("user")
					session, _ := c.Flags().GetString("session")
					if file == "" {
						address, _ := c.Flags().GetString("address")
						return revokeThroughAdmin(c.Context(), address, b2cauth.RevokeRequest{User: user, Session: session}, c.OutOrStdout())
					}
					if session != "" {
						return errors.New("--session works through the admin API, without --config")
					}
					return runRevoke(c.Context(), file, adapter, user, c.OutOrStdout())
				}}
			revoke.Flags().String("address", "", "the running Caddy's admin API (default: CADDY_ADMIN, else localhost:2019)")
			revoke.Flags().String("config", "", "instead of the admin API: write to the storage of this config (Caddy may be stopped)")
			revoke.Flags().String("adapter", "", "its adapter (caddyfile for a Caddyfile)")
			revoke.Flags().String("user", "", "the user's ID: the oid (else sub), as {http.auth.user.id} shows it")
			revoke.Flags().String("session", "", "instead of a user: one session, as {http.auth.b2c.session_id} shows it")
			cmd.AddCommand(check, secret, certificate, emulator, revoke)
		},
	})
}

// newCookieSecret is a cookie_secret: base64 of 32 random bytes.
func newCookieSecret() string {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return base64.StdEncoding.EncodeToString(k)
}

// explainCertificate prints what registering a certificate credential
// needs: its thumbprint and validity, the portal's and Azure CLI's steps,
// and the b2c_auth line. The private key is read only to check it is the
// certificate's; nothing of it is printed.
func explainCertificate(certFile, keyFile, clientID string, now time.Time, out io.Writer) error {
	info, err := credentials.InspectCertificate(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("client_certificate: %w", err)
	}
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	if clientID == "" {
		clientID = "<client ID>"
	}
	left := info.NotAfter.Sub(now).Hours() / 24
	day := func(t time.Time) string { return t.UTC().Format("2006-01-02") }
	fmt.Fprintf(out, `certificate %s
  subject     %s
  thumbprint  %s  (SHA-1: what the Entra admin center lists once uploaded)
  x5t#S256    %s  (SHA-256: what each client assertion names)
  valid       %s to %s (%.0f days left)
  key         %s: RSA %d bits, the certificate's

Register it with the app (Microsoft Entra ID or External ID; Azure AD B2C apps use client secrets):
  Entra admin center: App registrations → the app → Certificates & secrets → Certificates →
    Upload certificate → %s (the certificate only, never the key)
  or Azure CLI: az ad app credential reset --id %s --cert @%s --append
Then, in b2c_auth, instead of client_secret:
  client_certificate %s %s
and run "caddy b2c check" to prove it at the token endpoint.
`, certFile, info.Subject, info.Thumbprint, info.S256, day(info.NotBefore), day(info.NotAfter), left,
		keyFile, info.KeyBits, certFile, clientID, abs(certFile), abs(certFile), abs(keyFile))
	if warning := credentials.ExposedKeyFile(keyFile); warning != "" {
		fmt.Fprintln(out, "warning: "+warning)
	}
	switch {
	case left < 0:
		return fmt.Errorf("the certificate expired on %s: Entra refuses the assertions it signs", day(info.NotAfter))
	case left < 30:
		fmt.Fprintf(out, "warning: it expires in %.0f days: upload its successor beside it (--append) before then\n", left)
	}
	return nil
}

// foundHandler is a b2c_auth of a config with the origins of its site.
type foundHandler struct {
	raw     json.RawMessage
	origins []string
}

// runCheck checks every b2c_auth of a config file, prints the findings and
// returns how many are problems.
func runCheck(ctx context.Context, file, adapter string, out io.Writer) (int, error) {
	file, adapter, err := defaultConfig(file, adapter)
	if err != nil {
		return 0, err
	}
	cfg, _, _, err := caddycmd.LoadConfig(file, adapter)
	if err != nil {
		return 0, err
	}
	handlers, err := findHandlers(cfg)
	if err != nil {
		return 0, err
	}
	if len(handlers) == 0 {
		return 0, errors.New("no b2c_auth handler in the config")
	}
	problems := 0
	mistakes, err := b2cauth.OrderMistakes(cfg)
	if err != nil {
		return 0, err
	}
	for _, m := range mistakes {
		problems++
		fmt.Fprintf(out, "order:\n  %-8s %s\n", "problem", m)
	}
	for i, f := range handlers {
		var h b2cauth.Handler
		if err := json.Unmarshal(f.raw, &h); err != nil {
			return 0, fmt.Errorf("b2c_auth %d: %v", i+1, err)
		}
		fmt.Fprintf(out, "b2c_auth %d (site %s):\n", i+1, strings.Join(f.origins, ", "))
		for _, finding := range h.Check(ctx, f.origins) {
			if finding.Level == "problem" {
				problems++
			}
			fmt.Fprintf(out, "  %-8s %s\n", finding.Level, finding.Text)
		}
	}
	return problems, nil
}

// runRevoke records, in the storage of a config, that a user signed out
// everywhere now, for as long as the longest session_lifetime of its
// b2c_auth handlers.
func runRevoke(ctx context.Context, file, adapter, user string, out io.Writer) error {
	if user == "" {
		return errors.New("--user is required: the user's oid (else sub), as {http.auth.user.id} shows it")
	}
	file, adapter, err := defaultConfig(file, adapter)
	if err != nil {
		return err
	}
	cfg, _, _, err := caddycmd.LoadConfig(file, adapter)
	if err != nil {
		return err
	}
	handlers, err := findHandlers(cfg)
	if err != nil {
		return err
	}
	if len(handlers) == 0 {
		return errors.New("no b2c_auth handler in the config")
	}
	lifetime := b2cauth.DefaultSessionLifetime
	for _, f := range handlers {
		var h b2cauth.Handler
		if json.Unmarshal(f.raw, &h) == nil {
			lifetime = max(lifetime, time.Duration(h.SessionLifetime))
		}
	}
	cctx, cancel := caddy.NewContext(caddy.Context{Context: ctx})
	defer cancel()
	storage, err := configStorage(cctx, cfg)
	if err != nil {
		return err
	}
	now := time.Now()
	entry := signouts.Entry{Kind: signouts.KindUser, Value: user, Before: now.UnixMilli() + 1, Expires: now.Add(lifetime).Unix()}
	if err := signouts.New(storage, signouts.DefaultSync, zap.NewNop()).Add(ctx, entry); err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "signed out %s everywhere: sessions and bearer tokens issued before %s are refused by every instance sharing %s, within its revocation_sync\n",
		user, now.UTC().Format(time.RFC3339), storageName(storage))
	return err
}

// revokeThroughAdmin asks a running Caddy's admin API to sign a user out.
func revokeThroughAdmin(ctx context.Context, address string, what b2cauth.RevokeRequest, out io.Writer) error {
	if (what.User == "") == (what.Session == "") {
		return errors.New("give --user (the user's oid, else sub, as {http.auth.user.id} shows it) or --session ({http.auth.b2c.session_id})")
	}
	address = cmp.Or(address, os.Getenv("CADDY_ADMIN"), "localhost:2019")
	body, _ := json.Marshal(what)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+address+"/b2c_auth/revoke", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("the admin API at %s: %v (is Caddy running with its admin endpoint? or use --config)", address, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the admin API answered %d: %s", resp.StatusCode, strings.TrimSpace(string(data)))
	}
	var res b2cauth.RevokeResponse
	if err := json.Unmarshal(data, &res); err != nil {
		return err
	}
	if res.Session != "" {
		_, err = fmt.Fprintf(out, "signed out session %s: refused by every instance sharing the running config's storage, within its revocation_sync\n", res.Session)
		return err
	}
	_, err = fmt.Fprintf(out, "signed out %s everywhere: sessions and bearer tokens issued before %s are refused by every instance sharing the running config's storage, within its revocation_sync (recorded until %s)\n",
		res.User, res.Before.UTC().Format(time.RFC3339), res.Expires.UTC().Format(time.RFC3339))
	return err
}

// defaultConfig is --config, or the Caddyfile of the current directory, as
// Caddy's own commands default to.
func defaultConfig(file, adapter string) (string, string, error) {
	if file != "" {
		return file, adapter, nil
	}
	if _, err := os.Stat("Caddyfile"); err != nil {
		return "", "", errors.New("no --config given, and no Caddyfile in the current directory")
	}
	return "Caddyfile", cmp.Or(adapter, "caddyfile"), nil
}

// configStorage loads the storage a JSON config names, or Caddy's default.
func configStorage(ctx caddy.Context, cfg []byte) (certmagic.Storage, error) {
	var c struct {
		Storage json.RawMessage `json:"storage"`
	}
	if err := json.Unmarshal(cfg, &c); err != nil {
		return nil, err
	}
	if len(c.Storage) == 0 {
		return caddy.DefaultStorage, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(c.Storage, &fields); err != nil {
		return nil, err
	}
	var name string
	_ = json.Unmarshal(fields["module"], &name)
	delete(fields, "module")
	rest, _ := json.Marshal(fields)
	mod, err := ctx.LoadModuleByID("caddy.storage."+name, rest)
	if err != nil {
		return nil, fmt.Errorf("storage: %v", err)
	}
	conv, ok := mod.(caddy.StorageConverter)
	if !ok {
		return nil, fmt.Errorf("storage: %s is not a storage module", name)
	}
	return conv.CertMagicStorage()
}

func storageName(s certmagic.Storage) string {
	if str, ok := s.(fmt.Stringer); ok {
		return str.String()
	}
	return fmt.Sprintf("%T", s)
}

// findHandlers walks a JSON config's HTTP servers, subroutes included, for
// b2c_auth handlers, and the origins their routes serve.
func findHandlers(cfg []byte) ([]foundHandler, error) {
	var config struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Listen      []string          `json:"listen"`
					Routes      []json.RawMessage `json:"routes"`
					TLSPolicies json.RawMessage   `json:"tls_connection_policies"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfg, &config); err != nil {
		return nil, err
	}
	var found []foundHandler
	names := make([]string, 0, len(config.Apps.HTTP.Servers))
	for name := range config.Apps.HTTP.Servers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		srv := config.Apps.HTTP.Servers[name]
		origins := func(hosts []string) []string {
			if len(hosts) == 0 {
				hosts = []string{"localhost"}
			}
			var out []string
			for _, listen := range srv.Listen {
				_, port, _ := net.SplitHostPort(strings.TrimPrefix(listen, "tcp/"))
				scheme := "https"
				if port == "80" || (port != "443" && len(srv.TLSPolicies) == 0) {
					scheme = "http"
				}
				for _, host := range hosts {
					origin := scheme + "://" + host
					if (scheme == "http" && port != "80") || (scheme == "https" && port != "443") {
						origin += ":" + port
					}
					out = append(out, origin)
				}
			}
			return out
		}
		walkRoutes(srv.Routes, nil, func(raw json.RawMessage, hosts []string) {
			found = append(found, foundHandler{raw: raw, origins: origins(hosts)})
		})
	}
	return found, nil
}

// walkRoutes calls visit for every b2c_auth handler in routes, with the
// hosts its routes match.
func walkRoutes(routes []json.RawMessage, hosts []string, visit func(json.RawMessage, []string)) {
	for _, raw := range routes {
		var route struct {
			Match []struct {
				Host []string `json:"host"`
			} `json:"match"`
			Handle []json.RawMessage `json:"handle"`
		}
		if json.Unmarshal(raw, &route) != nil {
			continue
		}
		routeHosts := hosts
		for _, m := range route.Match {
			if len(m.Host) > 0 {
				routeHosts = m.Host
			}
		}
		for _, h := range route.Handle {
			var handler struct {
				Handler string            `json:"handler"`
				Routes  []json.RawMessage `json:"routes"`
			}
			if json.Unmarshal(h, &handler) != nil {
				continue
			}
			switch handler.Handler {
			case "b2c_auth":
				visit(h, routeHosts)
			case "subroute":
				walkRoutes(handler.Routes, routeHosts, visit)
			}
		}
	}
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
	if o.flavor != b2cemulator.FlavorB2C {
		metadata = authority + "/v2.0/.well-known/openid-configuration"
	}
	fmt.Fprintf(out, `b2c_emulator is running (%s): a local test tenant, never for production.

  authority   %s
  metadata    %s
  demo client %s (no secret; redirect URIs %s)
  demo user   %s / %s
  mailbox     %s/emulator/mailbox (the verification codes of sign-up and password reset)
  admin key   %s (POST %s/emulator/rotate_keys with Authorization: Bearer <key>)

b2c_auth:     authority %s  policy B2C_1_susi  client_id %s
MSAL Python:  ConfidentialClientApplication(client_id, authority="%s/B2C_1_susi", validate_authority=False, ...)
MSAL.js/Node: auth: { authority: "%s/B2C_1_susi", knownAuthorities: ["%s"] }
              (MSAL needs https: run with --tls, and trust Caddy's local CA: --trust,
              or caddy trust; without it the system trust store is left alone)
Flask sample: authority_template = "%s/tfp/{tenant}.onmicrosoft.com/{user_flow}", b2c_tenant = "%s"
`, o.flavor, authority, metadata, b2cemulator.DemoClientID, strings.Join(b2cemulator.DemoRedirectURIs, " "),
		b2cemulator.DemoUserEmail, b2cemulator.DemoUserPassword, authority, o.adminKey, authority,
		authority, b2cemulator.DemoClientID, authority, authority, o.listen, origin, o.tenant)
	<-done
	return nil
}
