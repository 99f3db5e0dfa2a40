package session

import (
	"bytes"
	"compress/flate"
	"strings"
	"testing"
)

// TestSessionBombRefused: a sealed session that inflates past 64 KiB is no
// session (it needs the key, but a leaked key must not buy a memory bomb).
func TestSessionBombRefused(t *testing.T) {
	var buf bytes.Buffer
	buf.WriteByte(deflated)
	zw, _ := flate.NewWriter(&buf, flate.BestCompression)
	_, _ = zw.Write([]byte(`{"it":"a.b.c","id":"x","pad":"` + strings.Repeat("A", maxJSON) + `"}`))
	_ = zw.Close()
	if got := Inflate(buf.Bytes()); got != nil {
		t.Error("a session inflating past the limit was accepted")
	}
	small := Deflate(&Session{ID: "x", IDToken: "a.b.c"})
	if got := Inflate(small); got == nil || got.ID != "x" {
		t.Errorf("a session under the limit: %+v", got)
	}
	if Inflate([]byte(`{"it":"a.b.c","id":"x"}`)) != nil {
		t.Error("JSON without the marker opened as a session")
	}
}
