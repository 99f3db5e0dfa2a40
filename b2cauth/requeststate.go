package b2cauth

import (
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// requestState is what the b2c_auth blocks that serve one request share:
// whether the client's identity headers are gone, the Cookie header as the
// client sent it, and the session identity each app found. It is one of
// Caddy's request variables, so that a block finds all of it with one
// lookup.
type requestState struct {
	started            time.Time // when Caddy began the request (its start_time), or zero
	headersStripped    bool
	assertionsStripped []string // the identity assertion headers whose client-sent copies are gone
	clientCookies      []string // the client's Cookie header, once a block hid its own cookies from upstream
	sessions           []appSession
	firstSession       [1]appSession // sessions' first element, in the same allocation
}

// appSession is the session identity a block found, for the later blocks
// of the same provider and client (the same purpose).
type appSession struct {
	purpose string
	id      *identity
}

const (
	// requestStateVar is the request variable that holds the requestState.
	requestStateVar = "b2c_auth.request"
	// startTimeVar is Caddy's own: when it began the request (its
	// {http.request.duration} counts from it).
	startTimeVar = "start_time"
)

// stateOf is the request's requestState, made by the first block that
// asks. A request not served by Caddy (it has no variables) gets one of
// its own.
func stateOf(r *http.Request) *requestState {
	vars, _ := r.Context().Value(caddyhttp.VarsCtxKey).(map[string]any)
	if st, ok := vars[requestStateVar].(*requestState); ok {
		return st
	}
	st := new(requestState)
	st.sessions = st.firstSession[:0]
	st.started, _ = vars[startTimeVar].(time.Time)
	if vars != nil {
		vars[requestStateVar] = st
	}
	return st
}

// String keeps what the state holds (the client's cookies, sessions among
// them) out of {http.vars.b2c_auth.request} and of anything that prints
// Caddy's variables.
func (st *requestState) String() string { return "" }

// session is the identity an earlier block of this purpose found, or nil.
func (st *requestState) session(purpose string) *identity {
	for _, s := range st.sessions {
		if s.purpose == purpose {
			return s.id
		}
	}
	return nil
}

// setSession keeps the identity a block of this purpose found.
func (st *requestState) setSession(purpose string, id *identity) {
	for i := range st.sessions {
		if st.sessions[i].purpose == purpose {
			st.sessions[i].id = id
			return
		}
	}
	st.sessions = append(st.sessions, appSession{purpose, id})
}

// stripOnce tells whether header's client-sent copy is still to be
// removed, and notes that it is being removed.
func (st *requestState) stripOnce(header string) bool {
	for _, h := range st.assertionsStripped {
		if sameCGIName(h, header) {
			return false
		}
	}
	st.assertionsStripped = append(st.assertionsStripped, header)
	return true
}
