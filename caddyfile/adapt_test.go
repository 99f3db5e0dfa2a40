// Package caddyfile holds the Caddyfile adapt fixtures. Each .caddyfiletest
// is a Caddyfile, a line of ten dashes, then the JSON it must adapt to or,
// for a config that must be refused, a line `error: <text>` naming what the
// error must contain. Every runnable Caddyfile in examples/ must adapt too.
package caddyfile

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"

	_ "github.com/caddy-b2c/caddy-b2c"
	"github.com/caddy-b2c/caddy-b2c/b2cauth"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/pberkel/caddy-storage-redis"
)

func adapt(src string) (string, error) {
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), nil)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, out, "", "\t"); err != nil {
		return "", err
	}
	return buf.String(), nil
}

func TestAdaptFixtures(t *testing.T) {
	files, _ := filepath.Glob("*.caddyfiletest")
	if len(files) == 0 {
		t.Fatal("no .caddyfiletest files")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(f, ".caddyfiletest"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			src, want, ok := strings.Cut(string(data), "\n----------\n")
			if !ok {
				t.Fatal("no line of ten dashes")
			}
			want = strings.TrimSpace(want)
			got, err := adapt(src)
			if wantErr, isErr := strings.CutPrefix(want, "error: "); isErr {
				if err == nil || !strings.Contains(err.Error(), wantErr) {
					t.Fatalf("want an error containing %q, got %v", wantErr, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			if got != want {
				if os.Getenv("UPDATE_ADAPT") != "" {
					_ = os.WriteFile(f, []byte(src+"\n----------\n"+got+"\n"), 0o644)
					return
				}
				t.Errorf("adapted JSON differs (UPDATE_ADAPT=1 rewrites it).\ngot:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestExamplesAdapt(t *testing.T) {
	files, _ := filepath.Glob("../examples/*.Caddyfile")
	deployments, _ := filepath.Glob("../examples/*/Caddyfile") // docker, systemd
	files = append(files, deployments...)
	if len(files) < 9 {
		t.Fatalf("only %d examples", len(files))
	}
	for _, f := range files {
		t.Run(strings.TrimPrefix(f, "../examples/"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(data), "#") {
				t.Error("an example starts with a comment saying what it is for")
			}
			cfg, err := adapt(string(data))
			if err != nil {
				t.Fatalf("%s does not adapt: %v", f, err)
			}
			// What caddy b2c check says of each example: nothing answers
			// before b2c_auth.
			if mistakes, err := b2cauth.OrderMistakes([]byte(cfg)); err != nil || len(mistakes) > 0 {
				t.Errorf("order check: %v %q", err, mistakes)
			}
		})
	}
}

// TestCaddyJSONExample: examples/caddy.json, the complete JSON example the
// docs point to, is what examples/admin-split.Caddyfile adapts to (with
// UPDATE_ADAPT=1 this test rewrites it).
func TestCaddyJSONExample(t *testing.T) {
	src, err := os.ReadFile("../examples/admin-split.Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	got, err := adapt(string(src))
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("UPDATE_ADAPT") == "1" {
		_ = os.WriteFile("../examples/caddy.json", []byte(got+"\n"), 0o644)
	}
	want, err := os.ReadFile("../examples/caddy.json")
	if err != nil || strings.TrimSpace(string(want)) != strings.TrimSpace(got) {
		t.Errorf("examples/caddy.json is not what admin-split.Caddyfile adapts to (UPDATE_ADAPT=1 rewrites it): %v", err)
	}
}
