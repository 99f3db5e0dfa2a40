package b2cauth

import (
	"bytes"
	"compress/flate"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// session is what the session cookie holds. There is no server-side state
// per session: only sign-outs are kept, in storage (see revocation.go).
type session struct {
	ID           string `json:"id"`           // random: what a sign-out revokes
	Issued       int64  `json:"is"`           // sign-in time, Unix ms: "everywhere" revokes sessions issued before it
	IDToken      string `json:"it"`           // its payload gives the claims
	AccessToken  string `json:"at,omitempty"` // when the provider gave one
	AccessExpiry int64  `json:"ae,omitempty"`
	RefreshToken string `json:"rt,omitempty"`
	Policy       string `json:"p,omitempty"` // the policy that issued the tokens
	// Claims that only the UserInfo endpoint gave (the ID token lacked them).
	UserInfo map[string]any `json:"u,omitempty"`
	Expires  int64          `json:"e"`
	Seen     int64          `json:"s"` // last activity, for inactivity_timeout
	// Microsoft Graph could not give the groups (rules that need them
	// refuse); the groups it gave are in UserInfo.
	GroupsUnknown bool `json:"gu,omitempty"`
}

// Cookie chunking: browsers drop cookies over about 4 KB, so a long value
// is split over `<name>`, `<name>_1`, … and reassembled. When split, the
// first cookie's value starts with the count and a dot (base64url has no dot).
const (
	chunkSize = 3800
	maxChunks = 8
)

// readChunked reassembles a possibly chunked cookie value; "" if absent or
// malformed. It reads the Cookie header once, without allocating but for
// the reassembled value (net/http's r.Cookie parses every cookie on each
// call), and, as r.Cookie does, takes the first cookie of each name.
func readChunked(r *http.Request, name string) string {
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
	countStr, first, split := strings.Cut(parts[0], ".")
	if !split {
		return parts[0]
	}
	n, err := strconv.Atoi(countStr)
	if err != nil || n < 2 || n > maxChunks {
		return ""
	}
	size := len(first)
	for i := 1; i < n; i++ {
		if parts[i] == "" {
			return ""
		}
		size += len(parts[i])
	}
	var sb strings.Builder
	sb.Grow(size)
	sb.WriteString(first)
	for i := 1; i < n; i++ {
		sb.WriteString(parts[i])
	}
	return sb.String()
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

// writeChunked sets a cookie value, split into chunks when long, and
// deletes chunks left over from a longer earlier value.
func writeChunked(w http.ResponseWriter, r *http.Request, base http.Cookie, value string) error {
	var parts []string
	for len(value) > chunkSize {
		parts = append(parts, value[:chunkSize])
		value = value[chunkSize:]
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
	deleteChunks(w, r, base, len(parts))
	return nil
}

// deleteChunks expires the chunks from index `from` on that the request has.
func deleteChunks(w http.ResponseWriter, r *http.Request, base http.Cookie, from int) {
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

// A session is sealed as JSON compressed with DEFLATE, after a marker
// byte: the tokens' base64 JSON compresses well, and a smaller cookie
// needs fewer chunks (and bytes on every request). JSON without the marker
// (it starts with '{') is read too.
const (
	deflatedSession = 0x01
	maxSessionJSON  = 64 << 10 // what a session may inflate to
)

// encodeSession and decodeSession turn a session into a cookie value.
func (h *Handler) encodeSession(s *session) string {
	data, _ := json.Marshal(s)
	var buf bytes.Buffer
	buf.WriteByte(deflatedSession)
	zw, _ := flate.NewWriter(&buf, flate.BestCompression)
	_, _ = zw.Write(data)
	_ = zw.Close()
	return h.codec.seal(buf.Bytes(), h.sessionPurpose)
}

func (h *Handler) decodeSession(value string) (*session, bool) {
	plain, ok := h.codec.open(value, h.sessionPurpose)
	if !ok || len(plain) == 0 {
		return nil, false
	}
	if plain[0] == deflatedSession {
		data, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(plain[1:])), maxSessionJSON+1))
		if err != nil || len(data) > maxSessionJSON {
			return nil, false
		}
		plain = data
	}
	var s session
	if json.Unmarshal(plain, &s) != nil || s.IDToken == "" || s.ID == "" {
		return nil, false
	}
	return &s, true
}

// newSession makes a session from a token response.
func (h *Handler) newSession(tr *tokenResponse, policy string) *session {
	now := h.now()
	s := &session{
		ID: randomString(), Issued: now.UnixMilli(),
		IDToken: tr.IDToken, AccessToken: tr.AccessToken, RefreshToken: tr.RefreshToken, Policy: policy,
		Expires: now.Add(time.Duration(h.SessionLifetime)).Unix(), Seen: now.Unix(),
	}
	if tr.AccessToken != "" {
		s.AccessExpiry = now.Add(time.Duration(tr.ExpiresIn) * time.Second).Unix()
	}
	return s
}

// writeSession sets the session cookie(s).
func (h *Handler) writeSession(w http.ResponseWriter, r *http.Request, s *session) error {
	c := cookie(r, sessionCookie)
	c.Expires = time.Unix(s.Expires, 0)
	return writeChunked(w, r, c, h.encodeSession(s))
}

// clearSession deletes the session cookie and its chunks.
func clearSession(w http.ResponseWriter, r *http.Request) {
	c := cookie(r, sessionCookie)
	c.MaxAge = -1
	http.SetCookie(w, &c)
	deleteChunks(w, r, c, 1)
}

// readSession returns the request's session identity, or nil: a missing,
// tampered, truncated, foreign or expired cookie is no session.
func (h *Handler) readSession(w http.ResponseWriter, r *http.Request) *identity {
	value := readChunked(r, cookie(r, sessionCookie).Name)
	if value == "" {
		return nil
	}
	now := h.now()
	id := h.cache.get(value, now)
	if id == nil {
		s, ok := h.decodeSession(value)
		if !ok {
			return nil
		}
		payload, err := jwtPayload(s.IDToken)
		if err != nil {
			return nil
		}
		if id, ok = h.identity(withUserInfo(payload, s.UserInfo)); !ok {
			return nil
		}
		id.session, id.expires = s, time.Unix(s.Expires, 0)
		id.groupsUnknown = s.GroupsUnknown
		h.cache.put(value, id)
	}
	s := id.session
	if now.Unix() >= s.Expires {
		return nil
	}
	if h.signouts.Revoked(s.ID, id.userKey, id.values["sid"], s.Issued) || (id.userKey != id.id && h.signouts.UserRevoked(id.id, s.Issued)) {
		if ce := h.logger.Check(zap.InfoLevel, "signed-out session refused"); ce != nil {
			ce.Write(zap.String("user_id", id.id))
		}
		if w != nil {
			clearSession(w, r)
		}
		return nil
	}
	if t := time.Duration(h.InactivityTimeout); t > 0 {
		idle := now.Sub(time.Unix(s.Seen, 0))
		if idle > t {
			return nil
		}
		if idle > t/8 && w != nil { // note the activity, not on every request
			renewed := *s
			renewed.Seen = now.Unix()
			if err := h.writeSession(w, r, &renewed); err != nil {
				return nil
			}
		}
	}
	if h.autoRefresh && w != nil && s.RefreshToken != "" && h.nearExpiry(id, now) {
		return h.autoRenew(w, r, id)
	}
	return id
}

// jwtPayload decodes a JWT's payload without checking it: only for tokens
// this handler checked before sealing them into the session.
func jwtPayload(token string) ([]byte, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a JWT")
	}
	return base64.RawURLEncoding.DecodeString(parts[1])
}

// authenticate finds the request's user: a bearer token, else the session.
// An error means a bearer token was presented and refused.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request) (*identity, error) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		if scheme, token, ok := strings.Cut(auth, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return h.bearer(r, strings.TrimSpace(token))
		}
	}
	return h.readSession(w, r), nil
}
