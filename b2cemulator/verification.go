package b2cemulator

import (
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Email verification, as B2C's sign-up and password reset pages do it: the
// page sends a one-time code to the address, and the account is created,
// or the password changed, only with that code. There is no mail server:
// the emulator's mailbox page (…/emulator/mailbox) shows what was sent.
const (
	codeLifetime    = 10 * time.Minute
	maxCodeAttempts = 3
	mailboxSize     = 50
)

// What a failed code check shows on the page, in B2C's words.
const (
	codeWrong    = "The verification code you have entered does not match our records. Please try again, or request a new code."
	codeExpired  = "That code is expired. Please request a new code."
	codeTooMany  = "You've made too many incorrect attempts. Please try again later."
	codeNotAsked = "Please verify your email address first: send a verification code."
)

// verifications holds the codes sent and the mailbox that shows them.
type verifications struct {
	mu      sync.Mutex
	pending map[string]*pendingCode // by purpose and lower-cased email
	mailbox []mailMessage           // newest last, at most mailboxSize
}

type pendingCode struct {
	code     string
	expires  time.Time
	attempts int
}

// mailMessage is a message the emulator "sent".
type mailMessage struct {
	To, Purpose, Code string
	Sent              time.Time
}

func verificationKey(purpose, email string) string {
	return purpose + "\x00" + strings.ToLower(strings.TrimSpace(email))
}

// send makes a new code for the address (replacing an earlier one) and
// puts it in the mailbox.
func (v *verifications) send(purpose, email string, now time.Time) {
	n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
	if err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	code := fmt.Sprintf("%06d", n.Int64())
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.pending == nil {
		v.pending = map[string]*pendingCode{}
	}
	for k, p := range v.pending { // bounded: only live codes stay
		if now.After(p.expires) {
			delete(v.pending, k)
		}
	}
	v.pending[verificationKey(purpose, email)] = &pendingCode{code: code, expires: now.Add(codeLifetime)}
	v.mailbox = append(v.mailbox, mailMessage{To: strings.TrimSpace(email), Purpose: purpose, Code: code, Sent: now})
	if len(v.mailbox) > mailboxSize {
		v.mailbox = v.mailbox[len(v.mailbox)-mailboxSize:]
	}
}

// check consumes the address's code if code is it, and returns "";
// otherwise what the page says. Each wrong try counts; after
// maxCodeAttempts the code is gone.
func (v *verifications) check(purpose, email, code string, now time.Time) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	key := verificationKey(purpose, email)
	p, ok := v.pending[key]
	switch {
	case !ok:
		return codeNotAsked
	case now.After(p.expires):
		delete(v.pending, key)
		return codeExpired
	case subtle.ConstantTimeCompare([]byte(strings.TrimSpace(code)), []byte(p.code)) != 1:
		p.attempts++
		if p.attempts >= maxCodeAttempts {
			delete(v.pending, key)
			return codeTooMany
		}
		return codeWrong
	}
	delete(v.pending, key)
	return ""
}

// messages are the mailbox's messages, newest first.
func (v *verifications) messages() []mailMessage {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]mailMessage, len(v.mailbox))
	for i, m := range v.mailbox {
		out[len(v.mailbox)-1-i] = m
	}
	return out
}

// mailboxPage shows the messages sent, newest first: the codes a developer
// (or a test) types into the sign-up and reset pages.
func (e *Emulator) mailboxPage(w http.ResponseWriter) error {
	return render(w, http.StatusOK, "mailbox", map[string]any{"Tenant": e.Tenant, "Messages": e.state.verify.messages()})
}

// crossSite tells a request that another site sent: the browser says so
// (Sec-Fetch-Site), or, from a browser without Fetch metadata, its Origin
// is not this site's. A request without either (a non-browser client) is
// not one.
func crossSite(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		// The browser's word decides: its pages send Origin "null" under
		// Referrer-Policy no-referrer.
		return site != "same-origin" && site != "none"
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	u, err := url.Parse(origin)
	return err != nil || u.Host != r.Host
}
