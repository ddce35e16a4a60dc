package admin_test

import (
	"io"
	"io/fs"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestConsoleFiles serves the console's files with the headers that keep
// it safe: a strict CSP (no inline script or style, nothing from
// elsewhere, no framing), nosniff, no referrer; and the files themselves
// have no inline script, style or handler to need a looser policy.
func TestConsoleFiles(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, c := range []struct{ path, contentType string }{
		{"/", "text/html; charset=utf-8"},
		{"/app.js", "text/javascript; charset=utf-8"},
		{"/api.js", "text/javascript; charset=utf-8"},
		{"/style.css", "text/css; charset=utf-8"},
		{"/favicon.svg", "image/svg+xml"},
	} {
		resp, err := http.Get(f.srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		if resp.StatusCode != 200 || h.Get("Content-Type") != c.contentType {
			t.Errorf("GET %s: %d %q", c.path, resp.StatusCode, h.Get("Content-Type"))
		}
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("GET %s: CSP %q lacks %s", c.path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe") || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("GET %s: headers %v", c.path, h)
		}
	}
	for _, path := range []string{"/nothing.js", "/console", "/index.htm", "/v1", "/app.js/x"} {
		resp, err := http.Get(f.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("GET %s: %d %s", path, resp.StatusCode, body)
		}
	}
	inline := regexp.MustCompile(`(?i)<script[^>]*>|<style|\sstyle=|\son[a-z]+=|javascript:|https?://`)
	err := fs.WalkDir(os.DirFS("console"), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".html") {
			return err
		}
		b, err := os.ReadFile("console/" + path)
		for _, m := range inline.FindAllString(string(b), -1) {
			if strings.HasPrefix(m, "<script") && strings.Contains(m, ` src="`) {
				continue
			}
			t.Errorf("console/%s has %q: inline code or a link elsewhere, which the CSP would block", path, m)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
