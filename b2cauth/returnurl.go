package b2cauth

import (
	"net/url"
	"strings"
)

// safeReturnURL returns raw when it is a relative path on this site, and
// "/" otherwise. It refuses absolute URLs (`https://evil`), scheme-relative
// ones (`//evil`, `/\evil`, which browsers read as `//evil`), other schemes
// (`javascript:`), control characters, and every percent-encoded form of
// these: the value is decoded until it stops changing and each form checked.
func safeReturnURL(raw string) string {
	if len(raw) > 2048 {
		return "/"
	}
	v := raw
	for range 4 {
		if !safePath(v) {
			return "/"
		}
		dec, err := url.PathUnescape(v)
		if err != nil {
			return "/"
		}
		if dec == v {
			return raw
		}
		v = dec
	}
	return "/" // still changing after several decodings: refuse
}

// safePath checks one form of a return URL.
func safePath(v string) bool {
	if !strings.HasPrefix(v, "/") || strings.HasPrefix(v, "//") || strings.ContainsRune(v, '\\') {
		return false
	}
	for _, c := range v {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	u, err := url.Parse(v)
	return err == nil && u.Scheme == "" && u.Host == "" && u.User == nil
}
