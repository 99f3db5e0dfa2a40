package subdirective

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

type config struct {
	Name     string
	Appended []string
	Listed   []string
	Wait     caddy.Duration
	On       bool
	Mode     string
	N        int
}

var table = Table[config]{
	"name":     One("name", func(c *config) *string { return &c.Name }),
	"appended": Append("appended", func(c *config) *[]string { return &c.Appended }),
	"listed":   List("listed", func(c *config) *[]string { return &c.Listed }),
	"wait":     Duration("wait", func(c *config) *caddy.Duration { return &c.Wait }),
	"on":       Flag("on", func(c *config) *bool { return &c.On }),
	"mode":     Choice("mode", func(c *config) *string { return &c.Mode }, "fast", "safe"),
	"n":        Count("n", func(c *config) *int { return &c.N }, 1),
}

func parse(block string) (config, error) {
	var c config
	d := caddyfile.NewTestDispenser("x {\n" + block + "\n}")
	d.Next()
	return c, table.ParseBlock(&c, d)
}

// TestLinesAsAUserWritesThem: each kind of line, a repeated Append adds
// where a repeated List replaces, and every mistake names the line.
func TestLinesAsAUserWritesThem(t *testing.T) {
	c, err := parse("name ada\nappended a b\nappended c\nlisted a b\nlisted c\nwait 90s\non\nmode safe\nn 3")
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "ada" || strings.Join(c.Appended, ",") != "a,b,c" || strings.Join(c.Listed, ",") != "c" ||
		time.Duration(c.Wait) != 90*time.Second || !c.On || c.Mode != "safe" || c.N != 3 {
		t.Errorf("parsed %+v", c)
	}
	for block, want := range map[string]string{
		"nam ada":   `unknown subdirective "nam"; did you mean "name"?`,
		"name":      "wrong argument count",
		"name a b":  "wrong argument count",
		"appended":  "wrong argument count",
		"wait soon": "wait:",
		"on please": "wrong argument count",
		"mode slow": `mode: "slow" is neither fast nor safe`,
		"n 0":       `n: "0" is not a positive number`,
		"n many":    `n: "many" is not a positive number`,
	} {
		if _, err := parse(block); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", block, err, want)
		}
	}
}
