package b2cemulator

import (
	"cmp"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestOptionsReference: the README's b2c_emulator table lists every
// subdirective the parser takes, with its JSON key.
func TestOptionsReference(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	table := string(readme)[strings.Index(string(readme), "`b2c_emulator`:"):]
	jsonKeys := map[string]string{"client": "clients", "api": "apis", "user": "users", "group": "groups", "managed_identity": "managed_identities"}
	for _, name := range subdirectives {
		key := cmp.Or(jsonKeys[name], name)
		if !regexp.MustCompile("(?m)^\\| `" + name + "` \\|.*\\| `" + key + "` \\|").MatchString(table) {
			t.Errorf("the options reference has no row for %s (JSON %s)", name, key)
		}
	}
}
