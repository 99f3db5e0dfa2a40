package caddyb2c_test

import (
	"os"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// TestSystemdUnitKeepsItsSecrets: the attack on a deployer's secrets —
// examples/systemd ran `caddy run --environ`, which prints every
// environment variable at start, so the client secret and the cookie
// secret of its mode-0600 EnvironmentFile went to the journal. Its
// ExecStart, read with Caddy's own flags for `run`, does not print the
// environment; and Caddy has a home to keep its data in.
func TestSystemdUnitKeepsItsSecrets(t *testing.T) {
	data, err := os.ReadFile("examples/systemd/caddy-b2c.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(data)
	var exec []string
	for line := range strings.SplitSeq(unit, "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			exec = strings.Fields(v)
		}
	}
	if len(exec) < 2 || !strings.HasSuffix(exec[0], "/caddy") || exec[1] != "run" {
		t.Fatalf("ExecStart is not caddy run: %q", exec)
	}
	run := &cobra.Command{Use: "run"}
	caddycmd.Commands()["run"].CobraFunc(run)
	if err := run.ParseFlags(exec[2:]); err != nil {
		t.Fatalf("ExecStart's flags: %v", err)
	}
	if environ, _ := run.Flags().GetBool("environ"); environ {
		t.Error("ExecStart prints the environment (--environ), secrets and all, into the journal")
	}
	if config, _ := run.Flags().GetString("config"); config != "/etc/caddy/Caddyfile" {
		t.Errorf("ExecStart's config: %q", config)
	}
	if !strings.Contains(unit, "\nStateDirectory=caddy\n") || !strings.Contains(unit, "useradd --system --create-home --home-dir /var/lib/caddy") {
		t.Error("the caddy user has no home for Caddy's data (useradd --create-home, StateDirectory=caddy)")
	}
	if !strings.Contains(unit, "\nEnvironmentFile=/etc/caddy/caddy-b2c.env\n") || !strings.Contains(unit, "install -m 0600 examples/systemd/caddy-b2c.env") {
		t.Error("the secrets do not come from a mode-0600 EnvironmentFile")
	}
}
