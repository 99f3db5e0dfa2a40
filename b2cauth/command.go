package b2cauth

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/credentials"
	"github.com/caddy-b2c/caddy-b2c/b2cauth/signouts"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
)

// `caddy b2c check|secret|certificate|revoke`, the commands that drive
// this package; the root package registers them under `caddy b2c`, as
// Caddy's caddyauth keeps `caddy hash-password` beside its code.

// Commands are the b2c_auth subcommands of `caddy b2c`.
func Commands() []*cobra.Command {

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
	revoke := &cobra.Command{Use: "revoke", Short: "Signs a user (or a session) out of every instance that shares the running config's storage", Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			file, _ := c.Flags().GetString("config")
			adapter, _ := c.Flags().GetString("adapter")
			user, _ := c.Flags().GetString("user")
			session, _ := c.Flags().GetString("session")
			if file == "" {
				address, _ := c.Flags().GetString("address")
				return revokeThroughAdmin(c.Context(), address, RevokeRequest{User: user, Session: session}, c.OutOrStdout())
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
	return []*cobra.Command{check, secret, certificate, revoke}
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
	mistakes, err := OrderMistakes(cfg)
	if err != nil {
		return 0, err
	}
	for _, m := range mistakes {
		problems++
		fmt.Fprintf(out, "order:\n  %-8s %s\n", "problem", m)
	}
	for i, f := range handlers {
		var h Handler
		if err := json.Unmarshal(f.raw, &h); err != nil {
			return 0, fmt.Errorf("b2c_auth %d: %v", i+1, err)
		}
		fmt.Fprintf(out, "b2c_auth %d (site %s):\n", i+1, strings.Join(f.origins, ", "))
		for _, result := range checkProvider(ctx, &h, f.origins) {
			if result.Level == "problem" {
				problems++
			}
			fmt.Fprintf(out, "  %-8s %s\n", result.Level, result.Text)
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
	lifetime := defaultSessionLifetime
	for _, f := range handlers {
		var h Handler
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
	entry := signouts.UserSignOut(user, now, lifetime)
	if err := signouts.New(storage, signouts.DefaultSync, zap.NewNop()).Add(ctx, entry); err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "signed out %s everywhere: sessions and bearer tokens issued before %s are refused by every instance sharing %s, within its revocation_sync\n",
		user, now.UTC().Format(time.RFC3339), storageName(storage))
	return err
}

// revokeThroughAdmin asks a running Caddy's admin API to sign a user out.
func revokeThroughAdmin(ctx context.Context, address string, what RevokeRequest, out io.Writer) error {
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
	var res RevokeResponse
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

// findHandlers finds a JSON config's b2c_auth handlers, subroutes
// included, and the origins their routes serve.
func findHandlers(cfg []byte) ([]foundHandler, error) {
	servers, err := jsonServers(cfg)
	if err != nil {
		return nil, err
	}
	var found []foundHandler
	for _, srv := range servers {
		origins := func(hosts []string) []string {
			if len(hosts) == 0 {
				hosts = []string{"localhost"}
			}
			var out []string
			for _, listen := range srv.listen {
				_, port, _ := net.SplitHostPort(strings.TrimPrefix(listen, "tcp/"))
				scheme := "https"
				if port == "80" || (port != "443" && !srv.tlsPolicies) {
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
		eachB2CAuth(srv.routes, scope{}, func(h orderHandler, s scope) {
			found = append(found, foundHandler{raw: h.raw, origins: origins(s.hosts)})
		})
	}
	return found, nil
}
