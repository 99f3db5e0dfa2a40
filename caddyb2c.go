// Package caddyb2c is the module root of caddy-b2c: importing it (as xcaddy
// does with --with github.com/caddy-b2c/caddy-b2c) registers every Caddy
// module of the project: http.handlers.b2c_auth and http.handlers.b2c_emulator.
package caddyb2c

import (
	// Register the handler modules and their Caddyfile directives.
	_ "github.com/caddy-b2c/caddy-b2c/b2cauth"
	_ "github.com/caddy-b2c/caddy-b2c/b2cemulator"
)
