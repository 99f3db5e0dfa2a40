package b2cemulator

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestOptionsReference: docs' b2c_emulator table lists every
// subdirective the parser takes, with its JSON key.
func TestOptionsReference(t *testing.T) {
	readme, err := os.ReadFile("../docs/options.md")
	if err != nil {
		t.Fatal(err)
	}
	table := string(readme)[strings.Index(string(readme), "`b2c_emulator`:"):]
	for name, sub := range subdirectives {
		key := sub.Key
		if !regexp.MustCompile("(?m)^\\| `" + name + "` \\|.*\\| `" + key + "` \\|").MatchString(table) {
			t.Errorf("the options reference has no row for %s (JSON %s)", name, key)
		}
	}
}
