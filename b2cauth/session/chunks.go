package session

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Cookie chunking: browsers drop cookies over about 4 KB, so a long value
// is split over `<name>`, `<name>_1`, … and reassembled. When split, the
// first cookie's value starts with the count and a dot (base64url has no dot).
const (
	ChunkSize = 3800
	maxChunks = 8
)

// Chunked is a cookie value as its chunks arrived: looked up and
// compared without joining them, which for a long session would copy
// kilobytes on every request.
type Chunked struct {
	parts [maxChunks]string
	n     int
}

// Present tells whether the cookie was sent (whole, and well-formed).
func (v *Chunked) Present() bool { return v.n > 0 }

// First is the first chunk: what a cache finds the value by.
func (v *Chunked) First() string { return v.parts[0] }

// Join is the whole value.
func (v *Chunked) Join() string {
	if v.n == 1 {
		return v.parts[0]
	}
	size := 0
	for _, p := range v.parts[:v.n] {
		size += len(p)
	}
	var sb strings.Builder
	sb.Grow(size)
	for _, p := range v.parts[:v.n] {
		sb.WriteString(p)
	}
	return sb.String()
}

// Equals tells whether the chunks joined are s, without joining them.
func (v *Chunked) Equals(s string) bool {
	for _, p := range v.parts[:v.n] {
		if !strings.HasPrefix(s, p) {
			return false
		}
		s = s[len(p):]
	}
	return s == ""
}

// ReadChunked finds a possibly chunked cookie value; n is 0 if it is absent
// or malformed. It reads the Cookie header once, without allocating
// (net/http's r.Cookie parses every cookie on each call), and, as r.Cookie
// does, takes the first cookie of each name.
func ReadChunked(r *http.Request, name string) (v Chunked) {
	var parts [maxChunks]string
	for _, line := range r.Header["Cookie"] {
		for rest := line; rest != ""; {
			var pair string
			pair, rest, _ = strings.Cut(rest, ";")
			n, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if !ok {
				continue
			}
			i := chunkIndex(n, name)
			if i < 0 || parts[i] != "" || v == "" { // the AEAD refuses anything malformed
				continue
			}
			parts[i] = v
		}
	}
	if parts[0] == "" {
		return v
	}
	countStr, first, split := strings.Cut(parts[0], ".")
	if !split {
		v.parts[0], v.n = parts[0], 1
		return v
	}
	n, err := strconv.Atoi(countStr)
	if err != nil || n < 2 || n > maxChunks {
		return v
	}
	for i := 1; i < n; i++ {
		if parts[i] == "" {
			return v
		}
	}
	v.parts, v.n = parts, n
	v.parts[0] = first
	return v
}

// chunkIndex is which chunk of name a cookie name is (0 for name itself,
// i for name_i), or -1.
func chunkIndex(cookieName, name string) int {
	if cookieName == name {
		return 0
	}
	rest, ok := strings.CutPrefix(cookieName, name+"_")
	if !ok || len(rest) != 1 || rest[0] < '1' || rest[0] >= '0'+maxChunks {
		return -1
	}
	return int(rest[0] - '0')
}

// WriteChunked sets a cookie value, split into chunks when long, and
// deletes chunks left over from a longer earlier value.
func WriteChunked(w http.ResponseWriter, r *http.Request, base http.Cookie, value string) error {
	var parts []string
	for len(value) > ChunkSize {
		parts = append(parts, value[:ChunkSize])
		value = value[ChunkSize:]
	}
	parts = append(parts, value)
	if len(parts) > maxChunks {
		return fmt.Errorf("session is too large for cookies (%d chunks)", len(parts))
	}
	if len(parts) > 1 {
		parts[0] = strconv.Itoa(len(parts)) + "." + parts[0]
	}
	for i, p := range parts {
		c := base
		c.Name = chunkName(base.Name, i)
		c.Value = p
		http.SetCookie(w, &c)
	}
	DeleteChunks(w, r, base, len(parts))
	return nil
}

// DeleteChunks expires the chunks from index `from` on that the request has.
func DeleteChunks(w http.ResponseWriter, r *http.Request, base http.Cookie, from int) {
	for i := from; i < maxChunks; i++ {
		name := chunkName(base.Name, i)
		if _, err := r.Cookie(name); err != nil {
			continue
		}
		c := base
		c.Name, c.Value, c.MaxAge = name, "", -1
		http.SetCookie(w, &c)
	}
}

func chunkName(name string, i int) string {
	if i == 0 {
		return name
	}
	return name + "_" + strconv.Itoa(i)
}
