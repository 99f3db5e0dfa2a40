package b2cemulator

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// TestEmulatorCommandListensOnlyWhereAsked: the config `caddy b2c emulator`
// runs binds the --listen host, serves HTTP/1.1 and 2 only, opens no
// HTTP→HTTPS redirect listener with --tls, and installs no CA in the
// system trust store unless --trust.
func TestEmulatorCommandListensOnlyWhereAsked(t *testing.T) {
	for _, tc := range []struct {
		o                emulatorOptions
		bind, trustStore bool
	}{
		{emulatorOptions{listen: "127.0.0.1:9444", tenant: "contoso", flavor: "b2c"}, true, false},
		{emulatorOptions{listen: "127.0.0.1:9444", tenant: "contoso", flavor: "b2c", tls: true}, true, false},
		{emulatorOptions{listen: "127.0.0.1:9444", tenant: "contoso", flavor: "b2c", tls: true, trust: true}, true, true},
		{emulatorOptions{listen: ":9444", tenant: "contoso", flavor: "b2c"}, false, false},
	} {
		caddyfile, err := emulatorCaddyfile(tc.o)
		if err != nil {
			t.Fatal(err)
		}
		cfgJSON, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
		if err != nil {
			t.Fatalf("%v\n%s", err, caddyfile)
		}
		cfg := string(cfgJSON)
		if got := strings.Contains(cfg, `"listen":["127.0.0.1:9444"]`); got != tc.bind {
			t.Errorf("%+v: bound to 127.0.0.1 only: %v\n%s", tc.o, got, cfg)
		}
		if !strings.Contains(cfg, `"protocols":["h1","h2"]`) || (tc.o.tls && !strings.Contains(cfg, `"disable_redirects":true`)) {
			t.Errorf("%+v: a listener nobody asked for:\n%s", tc.o, cfg)
		}
		if got := !strings.Contains(cfg, `"install_trust":false`); got != tc.trustStore {
			t.Errorf("%+v: installs into the system trust store: %v", tc.o, got)
		}
	}
	if _, err := emulatorCaddyfile(emulatorOptions{listen: "9444"}); err == nil {
		t.Error("--listen without a port's colon was accepted")
	}
}
