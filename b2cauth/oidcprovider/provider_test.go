package oidcprovider

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestRealDocumentsEndpoints: the endpoints of real B2C metadata documents
// (the ?p= form, a custom policy, the policy in the path) are accepted as
// the https URLs they are.
func TestRealDocumentsEndpoints(t *testing.T) {
	for _, name := range []string{"b2c-openid-configuration.json", "b2c-openid-configuration.custom-policy.json", "b2c-openid-configuration.policy-in-path.partial.json"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "fixtures", name))
		if err != nil {
			t.Fatal(err)
		}
		var m Metadata
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		for _, u := range []string{m.Issuer, m.AuthorizationEndpoint, m.TokenEndpoint, m.JWKSURI} {
			if err := checkEndpoint(u, "https"); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
		if err := checkEndpoint("http://evil.example/authorize", "https"); err == nil {
			t.Error("an http endpoint in an https document was accepted")
		}
	}
}
