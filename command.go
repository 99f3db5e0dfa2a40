package caddyb2c

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-b2c/caddy-b2c/b2cauth"
	"github.com/caddy-b2c/caddy-b2c/b2cemulator"
)

// `caddy b2c`, registered as Caddy's own `caddy hash-password` is, so
// every Caddy built with the plugin has it. Its subcommands live beside
// the code they drive: b2cauth.Commands (check, secret, certificate,
// revoke) and b2cemulator.Command (emulator).
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
			cmd.AddCommand(b2cauth.Commands()...)
			cmd.AddCommand(b2cemulator.Command())
		},
	})
}
