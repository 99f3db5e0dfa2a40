// Package guid knows the shape of the GUIDs Microsoft's platforms use for
// tenant, object and application IDs.
package guid

import "regexp"

// pattern is a GUID in any case, as Microsoft prints them (lower case in
// tokens, upper case in some portals).
var pattern = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)

// Valid tells whether s is a GUID and nothing else.
func Valid(s string) bool {
	return len(s) == 36 && pattern.MatchString(s)
}

// Find is the first GUID within s (a tenant ID in an issuer URL), or "".
func Find(s string) string { return pattern.FindString(s) }
