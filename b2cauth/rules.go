package b2cauth

import "strings"

// Rule matches a claim against glob patterns: `*` stands for any run of
// characters, `?` for one. Matching ignores case. An array claim matches
// when any element does.
type Rule struct {
	// The claim's name, such as `emails`, `groups` or `extension_Role`.
	Claim string `json:"claim"`
	// The patterns; any one suffices.
	Patterns []string `json:"patterns"`
}

// matches tells whether the claims satisfy the rule. A missing claim never
// matches.
func (r Rule) matches(claims map[string]any) bool {
	v, ok := claims[r.Claim]
	if !ok && r.Claim == "policy" {
		// The policy that proved the session, as {http.auth.user.policy}
		// shows it.
		v = policyOf(claims)
		ok = v != ""
	}
	if !ok {
		return false
	}
	for _, val := range claimValues(v) {
		for _, p := range r.Patterns {
			if glob(strings.ToLower(p), strings.ToLower(val)) {
				return true
			}
		}
	}
	return false
}

// permitted applies the allow and deny rules: a matching deny wins; with
// allow rules, one must match; with none, every signed-in user may in.
func permitted(allow, deny []Rule, claims map[string]any) bool {
	for _, r := range deny {
		if r.matches(claims) {
			return false
		}
	}
	if len(allow) == 0 {
		return true
	}
	for _, r := range allow {
		if r.matches(claims) {
			return true
		}
	}
	return false
}

// glob matches s against a pattern of literal bytes, `*` and `?`, in
// linear time (no backtracking blow-up on hostile patterns or values).
func glob(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
