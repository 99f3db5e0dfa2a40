// Package subdirective parses the lines of a Caddyfile block from a table:
// for each subdirective, how its arguments are read and the JSON key it
// writes. b2c_auth and b2c_emulator both read their blocks this way; the
// table also drives "did you mean" and the options reference tests.
package subdirective

import (
	"maps"
	"slices"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-b2c/caddy-b2c/internal/suggest"
)

// Line is one subdirective of a block whose configuration is a T.
type Line[T any] struct {
	Key   string // the JSON key it writes
	Parse func(t *T, d *caddyfile.Dispenser) error
}

// Table is a block's subdirectives, by name.
type Table[T any] map[string]Line[T]

// ParseBlock reads the lines of the block the dispenser is at into t; an
// unknown name is an error that suggests the nearest known one.
func (tab Table[T]) ParseBlock(t *T, d *caddyfile.Dispenser) error {
	for d.NextBlock(0) {
		name := d.Val()
		line, ok := tab[name]
		if !ok {
			return d.Errf("unknown subdirective %q%s", name, suggest.DidYouMean(name, slices.Sorted(maps.Keys(tab))))
		}
		if err := line.Parse(t, d); err != nil {
			return err
		}
	}
	return nil
}

// One reads exactly one argument into a field.
func One[T any](key string, field func(*T) *string) Line[T] {
	return Line[T]{key, func(t *T, d *caddyfile.Dispenser) error {
		if !d.AllArgs(field(t)) {
			return d.ArgErr()
		}
		return nil
	}}
}

// Append reads one or more arguments, appended to a field: the line may
// be repeated.
func Append[T any](key string, field func(*T) *[]string) Line[T] {
	return Line[T]{key, func(t *T, d *caddyfile.Dispenser) error {
		dst := field(t)
		*dst = append(*dst, d.RemainingArgs()...)
		if len(*dst) == 0 {
			return d.ArgErr()
		}
		return nil
	}}
}

// List reads one or more arguments into a field: a repeated line replaces
// the earlier one.
func List[T any](key string, field func(*T) *[]string) Line[T] {
	return Line[T]{key, func(t *T, d *caddyfile.Dispenser) error {
		if *field(t) = d.RemainingArgs(); len(*field(t)) == 0 {
			return d.ArgErr()
		}
		return nil
	}}
}

// Duration reads one argument, a duration as Caddy writes them.
func Duration[T any](key string, field func(*T) *caddy.Duration) Line[T] {
	return Line[T]{key, func(t *T, d *caddyfile.Dispenser) error {
		var s string
		if !d.AllArgs(&s) {
			return d.ArgErr()
		}
		v, err := caddy.ParseDuration(s)
		if err != nil {
			return d.Errf("%s: %v", key, err)
		}
		*field(t) = caddy.Duration(v)
		return nil
	}}
}

// Flag takes no argument and turns a field on.
func Flag[T any](key string, field func(*T) *bool) Line[T] {
	return Line[T]{key, func(t *T, d *caddyfile.Dispenser) error {
		if d.NextArg() {
			return d.ArgErr()
		}
		*field(t) = true
		return nil
	}}
}

// Choice reads one argument, which must be a or b.
func Choice[T any](key string, field func(*T) *string, a, b string) Line[T] {
	return Line[T]{key, func(t *T, d *caddyfile.Dispenser) error {
		v := field(t)
		if !d.AllArgs(v) {
			return d.ArgErr()
		}
		if *v != a && *v != b {
			return d.Errf("%s: %q is neither %s nor %s", key, *v, a, b)
		}
		return nil
	}}
}

// Count reads one argument, a whole number of at least least (0 or 1).
func Count[T any](key string, field func(*T) *int, least int) Line[T] {
	return Line[T]{key, func(t *T, d *caddyfile.Dispenser) error {
		var n string
		if !d.AllArgs(&n) {
			return d.ArgErr()
		}
		v, err := strconv.Atoi(n)
		if err != nil || v < least {
			if least > 0 {
				return d.Errf("%s: %q is not a positive number", key, n)
			}
			return d.Errf("%s: %q is not a number", key, n)
		}
		*field(t) = v
		return nil
	}}
}
