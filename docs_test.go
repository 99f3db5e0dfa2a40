package caddyb2c_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/pberkel/caddy-storage-redis" // the clusters page's storage
)

// docPages are the documents a deployer reads: the README, the docs and
// the project's own pages.
func docPages(t *testing.T) []string {
	t.Helper()
	pages, _ := filepath.Glob("docs/*.md")
	pages = append(pages, "README.md", "SECURITY.md", "CHANGELOG.md", "xcaddy.md")
	if len(pages) < 15 {
		t.Fatalf("only %d pages", len(pages))
	}
	return pages
}

// anchor is GitHub's anchor of a heading.
func anchor(heading string) string {
	h := strings.ToLower(strings.TrimSpace(heading))
	h = regexp.MustCompile(`[^\w\- ]`).ReplaceAllString(h, "")
	return strings.ReplaceAll(h, " ", "-")
}

// anchors are a Markdown page's headings' anchors.
func anchors(text string) []string {
	var out []string
	inFence := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
		}
		if m := regexp.MustCompile(`^#{1,6} (.*)`).FindStringSubmatch(line); m != nil && !inFence {
			out = append(out, anchor(m[1]))
		}
	}
	return out
}

// TestDocsLinksResolve: every relative link of every page reaches a file
// of the repository, and its #anchor a heading there.
func TestDocsLinksResolve(t *testing.T) {
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, page := range docPages(t) {
		data, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(data), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, frag, _ := strings.Cut(target, "#")
			path := page
			if file != "" {
				path = filepath.Join(filepath.Dir(page), file)
			}
			info, err := os.Stat(path)
			if err != nil {
				t.Errorf("%s: a link to %s: no such file", page, target)
				continue
			}
			if frag == "" || info.IsDir() {
				continue
			}
			text, _ := os.ReadFile(path)
			if !slices.Contains(anchors(string(text)), frag) {
				t.Errorf("%s: a link to %s: no such heading in %s", page, target, path)
			}
		}
	}
}

// TestDocsCaddyfilesAdaptAndAreFormatted: every ```caddyfile block of the
// pages is a Caddyfile that adapts (as `caddy adapt` does) and that `caddy
// fmt` would leave as it is. Syntax sketches, with <placeholders>, are in
// plain fences.
func TestDocsCaddyfilesAdaptAndAreFormatted(t *testing.T) {
	blocks := 0
	for _, page := range docPages(t) {
		data, _ := os.ReadFile(page)
		lines := strings.Split(string(data), "\n")
		for i := 0; i < len(lines); i++ {
			if lines[i] != "```caddyfile" {
				continue
			}
			j := i + 1
			for j < len(lines) && lines[j] != "```" {
				j++
			}
			block := strings.Join(lines[i+1:j], "\n") + "\n"
			i, blocks = j, blocks+1
			if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(block), nil); err != nil {
				t.Errorf("%s, the block of line %d does not adapt: %v\n%s", page, i, err, block)
			}
			if formatted := caddyfile.Format([]byte(block)); !bytes.Equal(formatted, []byte(block)) {
				t.Errorf("%s, the block before line %d is not caddy fmt-clean; caddy fmt writes:\n%s", page, i, formatted)
			}
		}
	}
	if blocks < 8 {
		t.Errorf("only %d Caddyfile blocks found", blocks)
	}
}

// TestDocsPlaceholdersExist: every {http.auth.b2c.*} the pages name is one
// the handler answers ({http.auth.user.*} takes any claim).
func TestDocsPlaceholdersExist(t *testing.T) {
	known := []string{"access_token", "id_token", "access_token_expires", "assertion", "session_id", "*"}
	re := regexp.MustCompile(`\{http\.auth\.b2c\.([a-z_*]+)\}`)
	for _, page := range docPages(t) {
		data, _ := os.ReadFile(page)
		for _, m := range re.FindAllStringSubmatch(string(data), -1) {
			if !slices.Contains(known, m[1]) {
				t.Errorf("%s names {http.auth.b2c.%s}, which does not exist", page, m[1])
			}
		}
	}
}

// TestREADMEIsShort: the README is a page a newcomer reads top to bottom.
func TestREADMEIsShort(t *testing.T) {
	data, _ := os.ReadFile("README.md")
	if n := strings.Count(string(data), "\n"); n > 300 {
		t.Errorf("the README is %d lines, more than 300: move a topic to docs/", n)
	}
}
