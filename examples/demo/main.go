// Command demo runs a Caddy with the plugin: a static site on
// http://localhost:8080 protected by b2c_auth, signing in against
// b2c_emulator on http://127.0.0.1:9000. No Azure tenant needed. With
// -flavor external_id or entra_id, the emulator speaks Microsoft Entra
// External ID or Entra ID, and b2c_auth signs in with it in issuer mode.
//
//	go run ./examples/demo [-flavor b2c|external_id|entra_id]
package main

import (
	"embed"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	_ "github.com/caddy-b2c/caddy-b2c"
	"github.com/caddy-b2c/caddy-b2c/b2cemulator"
	"github.com/caddy-b2c/caddy-b2c/internal/portcheck"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

//go:embed site
var site embed.FS

// Config is the demo's Caddyfile: the emulator on 127.0.0.1:idpPort (so the
// provider is another site than the app, as with real B2C) and the protected
// site on localhost:sitePort, served from root. responseMode is query or
// form_post; flavor is b2c, external_id or entra_id.
func Config(sitePort, idpPort int, root, storage, responseMode, flavor string) string {
	siteURL := fmt.Sprintf("http://localhost:%d", sitePort)
	provider := fmt.Sprintf(`authority http://127.0.0.1:%d/contoso.onmicrosoft.com
		policy B2C_1_susi
		password_reset_policy B2C_1_reset
		profile_edit_policy B2C_1_edit`, idpPort)
	if flavor != b2cemulator.FlavorB2C {
		// No user flows: the metadata is the tenant's, and its issuer (the
		// tenant ID form) differs from the discovery URL, as in Azure.
		provider = fmt.Sprintf(`issuer http://127.0.0.1:%d/contoso.onmicrosoft.com/v2.0
		scopes openid profile email offline_access`, idpPort)
	}
	return fmt.Sprintf(`{
	admin off
	persist_config off
	storage file_system %[5]q
}

# The local B2C tenant: the demo user and the demo app, registered for this site.
# Both sites listen on the loopback address only: nothing here is for the network.
http://127.0.0.1:%[2]d {
	bind 127.0.0.1
	b2c_emulator {
		flavor %[7]s
		client %[6]s {
			redirect_uri %[1]s/.auth/login/b2c/callback
		}
	}
}

# The protected static site; the page that says you signed out is open.
%[1]s {
	bind 127.0.0.1
	@protected not path /signed-out.html
	b2c_auth @protected {
		%[8]s
		client_id %[6]s
		response_mode %[3]s
	}
	root * %[4]q
	templates
	file_server
}
`, siteURL, idpPort, responseMode, root, storage, b2cemulator.DemoClientID, flavor, provider)
}

// Start writes the site to dir and starts Caddy with the demo config,
// unless something already answers on one of its ports.
func Start(sitePort, idpPort int, dir, responseMode, flavor string) error {
	for _, port := range []int{sitePort, idpPort} {
		if err := portcheck.Unanswered(fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
			return err
		}
	}
	root := filepath.Join(dir, "site")
	sub, _ := fs.Sub(site, "site")
	if err := os.CopyFS(root, sub); err != nil && !os.IsExist(err) {
		return err
	}
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(Config(sitePort, idpPort, root, filepath.Join(dir, "storage"), responseMode, flavor)), nil)
	if err != nil {
		return err
	}
	return caddy.Load(cfg, true)
}

func main() {
	sitePort := flag.Int("port", 8080, "port of the protected site on localhost")
	idpPort := flag.Int("idp-port", 9000, "port of the emulated B2C tenant on 127.0.0.1")
	mode := flag.String("response-mode", "query", "query or form_post")
	flavor := flag.String("flavor", b2cemulator.FlavorB2C, "the platform the emulator speaks: b2c, external_id or entra_id")
	flag.Parse()

	dir, err := os.MkdirTemp("", "caddy-b2c-demo-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	switch *flavor {
	case b2cemulator.FlavorB2C, b2cemulator.FlavorExternalID, b2cemulator.FlavorEntraID:
	default:
		log.Fatalf("-flavor: %q is not b2c, external_id or entra_id", *flavor)
	}
	if err := Start(*sitePort, *idpPort, dir, *mode, *flavor); err != nil {
		log.Fatalf("starting the demo: %v", err)
	}
	fmt.Printf("\ncaddy-b2c demo is running.\n\n  Open http://localhost:%d and sign in as %s / %s\n  (the emulated %s tenant is at http://127.0.0.1:%d)\n\nPress Ctrl-C to stop.\n\n",
		*sitePort, b2cemulator.DemoUserEmail, b2cemulator.DemoUserPassword, *flavor, *idpPort)

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, os.Interrupt, syscall.SIGTERM)
	<-stop
	fmt.Println("stopping")
	if err := caddy.Stop(); err != nil {
		log.Print(err)
	}
}
