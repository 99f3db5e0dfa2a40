package b2cauth

import (
	"encoding/base64"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/caddy-b2c/caddy-b2c/b2cauth/oidcprovider"
	"github.com/caddy-b2c/caddy-b2c/b2cauth/session"
)

// platformTokens are a token response of each platform, as big as real
// ones: B2C's are the fixtures' real tokens (its refresh token, opaque,
// stood for by a real B2C authorization code: the same JWE format);
// Entra ID's and External ID's are built from the claims of Microsoft's
// documented example tokens (id-token-claims-reference.md and
// access-tokens.md), RS256-signed with a 2048-bit key, with an opaque
// refresh token of 1,400 characters that does not compress (Entra's are
// encrypted).
func platformTokens(t *testing.T) map[string]*oidcprovider.TokenResponse {
	jwt := fixtureJWT(t)
	var samples struct {
		Code string `json:"authorization_code_real_capture"`
	}
	readFixture(t, "b2c-token-response-samples.json", &samples)
	s := newSigner(t, "1LTMzakihiRla_8z2BEJVXeWMqo")
	rng := rand.New(rand.NewPCG(1, 2))
	opaque := make([]byte, 1050)
	for i := range opaque {
		opaque[i] = byte(rng.UintN(256))
	}
	entraRefresh := "1.AVMA" + base64.RawURLEncoding.EncodeToString(opaque)
	entra := func(iss string, extra map[string]any) *oidcprovider.TokenResponse {
		id := map[string]any{
			"ver": "2.0", "iss": iss, "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
			"aud": "6cb04018-a3f5-46a7-b995-940c78f5aef3", "exp": 1536361411, "iat": 1536274711, "nbf": 1536274711,
			"name": "Abe Lincoln", "preferred_username": "AbeLi@microsoft.com", "oid": "00000000-0000-0000-66f3-3332eca7ea81",
			"tid": "9122040d-6c67-4c5b-b112-36a304b66dad", "nonce": "123523",
			"aio": "Df2UVXL1ix!lMCWMSOJBcFatzcGfvFGhjKv8q5g0x732dR5MB5BisvGQO7YWByjd8iQDLq!eGbIDakyp5mnOrcdqHeYSnltepQmRp6AIZ8jY",
			"sid": "00aa1bb2-2cc3-3dd4-4ee5-5ff66aa77bb8", "uti": "fqiBqXLPj0eQa82S-IYFAA", "rh": "0.AVMAelxJClaKxkG_CfFMyvl9_q2JtnJfpiZErcliwURGkPFTACA.",
		}
		at := map[string]any{
			"aud": "6e74172b-be56-4843-9ff4-e66a39bb12e3", "iss": iss, "iat": 1537231048, "nbf": 1537231048, "exp": 1537234948,
			"aio": "AXQAi/8IAAAAtAaZLo3ChMif6KOnttRB7eBq4/DccQzjcJGxPYy/C3jDaNGxXd6wNIIVGRghNRnwJ1lOcAnNZcjvkoyrFxCttv33140RioOFJ4bCCGVuoCag1uOTT22222gHwLPYQ/uf79QX+0KIijdrmp69RctzmQ==",
			"azp": "6e74172b-be56-4843-9ff4-e66a39bb12e3", "azpacr": "0", "name": "Abe Lincoln", "oid": "690222be-ff1a-4d56-abd1-7e4f7d38e474",
			"preferred_username": "abeli@microsoft.com", "rh": "I", "scp": "access_as_user", "sub": "HKZpfaHyWadeOouYlitjrI-KffTm222X5rrV3xDqfKQ",
			"tid": "72f988bf-86f1-41af-91ab-2d7cd011db47", "uti": "fqiBqXLPj0eQa82S-IYFAA", "ver": "2.0",
		}
		for k, v := range extra {
			id[k], at[k] = v, v
		}
		return &oidcprovider.TokenResponse{IDToken: s.sign(t, id), AccessToken: s.sign(t, at), RefreshToken: entraRefresh, ExpiresIn: 3600}
	}
	return map[string]*oidcprovider.TokenResponse{
		"Azure AD B2C": {IDToken: jwt("dtjacdemo_id_token_2024"), AccessToken: jwt("dtjacdemo_access_token_2024"), RefreshToken: samples.Code, ExpiresIn: 3600},
		"Entra ID":     entra("https://login.microsoftonline.com/9122040d-6c67-4c5b-b112-36a304b66dad/v2.0", nil),
		"External ID": entra("https://9122040d-6c67-4c5b-b112-36a304b66dad.ciamlogin.com/9122040d-6c67-4c5b-b112-36a304b66dad/v2.0",
			map[string]any{"email": "abe@contoso.example"}),
	}
}

// sessionCookieBytes is how many bytes of Cookie header a session of these
// tokens costs every request (name=value of each cookie, and "; " between).
func sessionCookieBytes(t *testing.T, store string, keep []string, tr *oidcprovider.TokenResponse) int {
	h, _, _ := setup(t, func(h *Handler) { h.SessionStore, h.SessionTokens = store, keep })
	payload, err := session.JWTPayload(tr.IDToken)
	if err != nil {
		t.Fatal(err)
	}
	s := h.sessions.start(tr, "B2C_1_susi", payload)
	rec := httptest.NewRecorder()
	if err := h.sessions.write(rec, httptest.NewRequest("GET", "https://www.contoso.example/", nil), s, nil); err != nil {
		t.Fatal(err)
	}
	n := 0
	for i, c := range rec.Result().Cookies() {
		if i > 0 {
			n += 2
		}
		n += len(c.Name) + 1 + len(c.Value)
	}
	return n
}

// TestSessionSizesInTheReadme: a stored session's cookie is at most 512
// bytes with every platform's tokens, and docs' table of session
// sizes is what this version makes (within 3%: signatures and compression
// move a few bytes).
func TestSessionSizesInTheReadme(t *testing.T) {
	readme, err := os.ReadFile("../docs/sessions.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `session_store (cookie|storage)`(?: with `session_tokens ([a-z ]+)`)?[^|]* \\| ([0-9,]+) \\| ([0-9,]+) \\| ([0-9,]+) \\|$")
	rows := row.FindAllStringSubmatch(string(readme), -1)
	if len(rows) < 5 {
		t.Fatalf("docs' session size table has %d rows, want at least 5", len(rows))
	}
	tokens := platformTokens(t)
	for _, r := range rows {
		var keep []string
		if r[2] != "" {
			keep = strings.Fields(r[2])
		}
		for i, platform := range []string{"Azure AD B2C", "Entra ID", "External ID"} {
			got := sessionCookieBytes(t, r[1], keep, tokens[platform])
			want, _ := strconv.Atoi(strings.ReplaceAll(r[3+i], ",", ""))
			if diff := got - want; diff*100 > want*3 || -diff*100 > want*3 {
				t.Errorf("%s, %s: docs/sessions.md says %d bytes, this version makes %d", strings.TrimSpace(r[0][:strings.Index(r[0][1:], "|")+1]), platform, want, got)
			}
			if r[1] == "storage" && got > 512 {
				t.Errorf("a stored session's cookie with %s tokens is %d bytes, want at most 512", platform, got)
			}
		}
	}
}
