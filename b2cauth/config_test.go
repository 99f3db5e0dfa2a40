package b2cauth

import (
	"github.com/caddy-b2c/caddy-b2c/b2cauth/credentials"

	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
)

func provision(t *testing.T, h *Handler) error {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	h.storage = &certmagic.FileStorage{Path: t.TempDir()}
	t.Cleanup(func() { _ = h.Cleanup() })
	return h.Provision(ctx)
}

func TestProvisionErrorsNameTheFieldNotTheSecret(t *testing.T) {
	t.Setenv("B2C_TEST_SECRET", "sup3r-s3cret-value")
	t.Setenv("B2C_TEST_SHORT_KEY", "c2hvcnQ=")
	base := func() *Handler {
		return &Handler{Tenant: "contoso", Policy: "B2C_1_susi", ClientID: "app", CookieSecret: []string{testCookieSecret}}
	}
	cases := map[string]struct {
		change func(*Handler)
		want   string
	}{
		"unset env":          {func(h *Handler) { h.ClientSecret = "{env.B2C_TEST_UNSET_VAR}" }, "client_secret:"},
		"unset client_id":    {func(h *Handler) { h.ClientID = "{env.B2C_TEST_UNSET_VAR}" }, "client_id:"},
		"unset audience":     {func(h *Handler) { h.Audience = []string{"{env.B2C_TEST_UNSET_VAR}"} }, "audience:"},
		"short cookie key":   {func(h *Handler) { h.CookieSecret = []string{"{env.B2C_TEST_SHORT_KEY}"} }, "cookie_secret: secret 1 is 5 bytes"},
		"two providers":      {func(h *Handler) { h.Issuer = "https://login.example.com" }, "give only one"},
		"bad authority":      {func(h *Handler) { h.Tenant, h.Authority = "", "ftp://x" }, "authority:"},
		"policy with issuer": {func(h *Handler) { h.Tenant, h.Issuer = "", "https://login.example.com" }, "issuer and external_id have no policies"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			h := base()
			tc.change(h)
			err := provision(t, h)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "sup3r") {
				t.Errorf("the error shows a secret: %v", err)
			}
		})
	}
	h := base()
	h.ClientSecret = "{env.B2C_TEST_SECRET}"
	if err := provision(t, h); err != nil || h.idp.credential != credentials.Secret("sup3r-s3cret-value") {
		t.Errorf("env placeholder not resolved: %v", err)
	}
	t.Setenv("B2C_TEST_API_CLIENT", "api-client-id")
	h = base()
	h.Audience = []string{"{env.B2C_TEST_API_CLIENT}"}
	if err := provision(t, h); err != nil || h.Audience[0] != "api-client-id" {
		t.Errorf("audience placeholder not resolved: %v %v", err, h.Audience)
	}
	h = base()
	h.ClientSecret = "{env.B2C_TEST_SECRET}"
	if err := provision(t, h); err != nil {
		t.Fatal(err)
	}
	if h.ClientSecret != "{env.B2C_TEST_SECRET}" {
		t.Error("the configured value should stay the placeholder")
	}
}

// TestOptionsReference: docs' options table lists every subdirective
// the parser takes, with the JSON key the adapter writes.
func TestOptionsReference(t *testing.T) {
	readme, err := os.ReadFile("../docs/options.md")
	if err != nil {
		t.Fatal(err)
	}
	table := string(readme)[strings.Index(string(readme), "## Options reference"):]
	table = table[:strings.Index(table, "`b2c_emulator`:")]
	for name, sub := range subdirectives {
		key := sub.Key
		row := regexp.MustCompile("(?m)^\\| `" + name + "` \\|.*\\| `" + key + "` \\|")
		if !row.MatchString(table) {
			t.Errorf("the options reference has no row for %s (JSON %s)", name, key)
		}
	}
}
