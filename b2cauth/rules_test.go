package b2cauth

import "testing"

func claimsOf(t *testing.T, s string) map[string]any {
	id, ok := newIdentity([]byte(s))
	if !ok {
		t.Fatalf("bad claims %s", s)
	}
	return id.claims
}

func TestRules(t *testing.T) {
	ada := `{"sub":"1","emails":["ada@contoso.com","ada@personal.example"],"groups":["staff","admins"],"extension_Role":"Admin","age":42}`
	cases := []struct {
		name        string
		allow, deny []Rule
		claims      string
		want        bool
	}{
		{"no rules: any signed-in user", nil, nil, ada, true},
		{"exact string, case ignored", []Rule{{"extension_Role", []string{"admin"}}}, nil, ada, true},
		{"glob on an array element", []Rule{{"emails", []string{"*@contoso.com"}}}, nil, ada, true},
		{"no element matches", []Rule{{"emails", []string{"*@fabrikam.com"}}}, nil, ada, false},
		{"any allow line suffices", []Rule{{"groups", []string{"nobody"}}, {"groups", []string{"adm?ns"}}}, nil, ada, true},
		{"any pattern of a line suffices", []Rule{{"groups", []string{"x", "staff"}}}, nil, ada, true},
		{"missing claim never matches", []Rule{{"roles", []string{"*"}}}, nil, ada, false},
		{"numbers match as text", []Rule{{"age", []string{"4?"}}}, nil, ada, true},
		{"deny wins over allow", []Rule{{"groups", []string{"staff"}}}, []Rule{{"emails", []string{"ada@*"}}}, ada, false},
		{"deny alone refuses only its match", nil, []Rule{{"groups", []string{"interns"}}}, ada, true},
		{"deny on a missing claim does nothing", nil, []Rule{{"roles", []string{"*"}}}, ada, true},
		{"star does not cross into a longer suffix", []Rule{{"emails", []string{"*@contoso.co"}}}, nil, ada, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := permitted(tc.allow, tc.deny, claimsOf(t, tc.claims)); got != tc.want {
				t.Errorf("permitted = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		p, s string
		want bool
	}{
		{"*", "", true}, {"a*c", "abbbc", true}, {"a*c", "abbbd", false}, {"?", "", false},
		{"*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false}, {"", "", true}, {"x", "xy", false},
	} {
		if got := glob(tc.p, tc.s); got != tc.want {
			t.Errorf("glob(%q, %q) = %v", tc.p, tc.s, got)
		}
	}
}

func TestPlaceholderValues(t *testing.T) {
	id, ok := newIdentity([]byte(`{"sub":"s","emails":["a@x","b@x"],"acr":"b2c_1a_signup_signin","n":1.5,"flag":true,"obj":{"k":"v"}}`))
	if !ok {
		t.Fatal("no identity")
	}
	want := map[string]string{"id": "s", "email": "a@x", "emails": "a@x,b@x", "policy": "b2c_1a_signup_signin", "n": "1.5", "flag": "true", "obj": `{"k":"v"}`}
	for k, v := range want {
		if id.values[k] != v {
			t.Errorf("%s = %q, want %q", k, id.values[k], v)
		}
	}
	// An access token without oid uses sub; one with neither is no user.
	if _, ok := newIdentity([]byte(`{"name":"x"}`)); ok {
		t.Error("an identity without oid or sub")
	}
}
