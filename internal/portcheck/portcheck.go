// Package portcheck tells whether something already answers on an
// address before a local tool (the demo, caddy b2c emulator) starts
// there. Caddy's listeners share ports with other Caddy processes
// (SO_REUSEPORT), so a second instance would start silently and take half
// of the connections.
package portcheck

import (
	"fmt"
	"net"
	"time"
)

// Unanswered returns an error naming addr when a TCP connection to it
// succeeds; an address without a host is tried on 127.0.0.1.
func Unanswered(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(host, port), time.Second)
	if err != nil {
		return nil
	}
	conn.Close()
	return fmt.Errorf("%s: something already answers there (another emulator or demo?): stop it, or choose another address", addr)
}
