package b2cemulator_test

import (
	"net/url"
	"testing"
)

// TestTokenNumbersAsStrings: with token_numbers string the B2C flavor writes
// its token responses' numbers as openid-connect.md shows them ("expires_in":
// "3600"); by default as JSON numbers, as access-tokens.md shows them.
func TestTokenNumbersAsStrings(t *testing.T) {
	for format, want := range map[string]string{"string": "string", "number": "float64"} {
		c := startEmulator(t, "token_numbers "+format)
		q := c.signIn(c.authorizeURL("B2C_1_susi", url.Values{"scope": {"openid offline_access " + secretClient}}), "ada@contoso.example", "Passw0rd!")
		status, body := c.redeem("B2C_1_susi", codeForm(q.Get("code")))
		if status != 200 {
			t.Fatalf("%s: %d %v", format, status, body)
		}
		for _, field := range []string{"not_before", "expires_in", "expires_on", "id_token_expires_in", "refresh_token_expires_in"} {
			if got := typeName(body[field]); got != want {
				t.Errorf("token_numbers %s: %s is a %s (%v), want a %s", format, field, got, body[field], want)
			}
		}
	}
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case float64:
		return "float64"
	}
	return "missing"
}
