package suggest

import "testing"

func TestClosest(t *testing.T) {
	options := []string{"client_id", "client_secret", "require_scopes", "require_roles", "policy", "tenant"}
	for word, want := range map[string]string{
		"clientid":       "client_id",
		"client_secrt":   "client_secret",
		"require_scope":  "require_scopes",
		"require_role":   "require_roles",
		"polcy":          "policy",
		"tennant":        "tenant",
		"listen":         "",
		"x":              "",
		"completely_new": "",
	} {
		if got := Closest(word, options); got != want {
			t.Errorf("Closest(%q) = %q, want %q", word, got, want)
		}
	}
	if got := DidYouMean("polcy", options); got != `; did you mean "policy"?` {
		t.Errorf("DidYouMean: %q", got)
	}
}
