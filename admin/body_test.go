package admin_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/admin"
)

// filler is an endless body of JSON-ish bytes, never held in memory.
type filler struct{}

func (filler) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

// TestBodyTooLarge: a body over the limit is answered 413, as a problem,
// to real clients, whatever their way of sending it: the answer arrives
// instead of a reset connection, also when the client writes its whole
// body before it reads, and on operations that take no body.
func TestBodyTooLarge(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	k := f.create(map[string]any{})
	const MiB = 1 << 20
	cases := []struct {
		name, method, path string
		size               int64
		chunked            bool // send without Content-Length
		token              string
	}{
		{"1 MiB", "POST", "/v1/keys", MiB, false, f.root},
		{"1 MiB chunked", "POST", "/v1/keys", MiB, true, f.root},
		{"100 MiB chunked", "POST", "/v1/keys", 100 * MiB, true, f.root},
		{"100 MiB with its length", "PATCH", "/v1/keys/" + k.ID, 100 * MiB, false, f.root},
		{"the limit and a byte", "POST", "/v1/keys", admin.MaxBodySize + 1, false, f.root},
		{"the limit and a byte, chunked", "POST", "/v1/keys/" + k.ID + "/rotate", admin.MaxBodySize + 1, true, f.root},
		{"an operation that takes no body", "DELETE", "/v1/keys/" + k.ID, 10 * MiB, true, f.root},
		{"a read", "GET", "/v1/keys", 10 * MiB, false, f.root},
		{"without a token", "POST", "/v1/keys", 10 * MiB, true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(c.method, f.srv.URL+c.path, io.LimitReader(filler{}, c.size))
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = c.size
			if c.chunked {
				req.ContentLength = -1
			}
			req.Header.Set("Content-Type", "application/json")
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			res := readResult(t, resp)
			f.checkTooLarge(c.method, c.path, res)
		})
	}
	// A client that writes its whole request before it reads a byte.
	for _, size := range []int{2 * MiB, 30 * MiB} {
		t.Run(fmt.Sprintf("%d MiB written before reading", size/MiB), func(t *testing.T) {
			conn, err := net.Dial("tcp", f.srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(time.Minute))
			head := fmt.Sprintf("POST /v1/keys HTTP/1.1\r\nHost: keygate\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", f.root, size)
			if _, err := io.Copy(conn, io.MultiReader(strings.NewReader(head), io.LimitReader(filler{}, int64(size)))); err != nil {
				t.Fatalf("writing the request: %v", err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			f.checkTooLarge("POST", "/v1/keys", readResult(t, resp))
		})
	}
	// curl, which sends Expect: 100-continue with a large body and must
	// get its 413 instead of the go-ahead.
	if _, err := exec.LookPath("curl"); err == nil {
		t.Run("curl, 100 MiB from a file", func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "big.json")
			if err := os.WriteFile(file, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(file, 100*MiB); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("curl", "-sS", "-i", "--max-time", "60", "-X", "POST", "--data-binary", "@"+file,
				"-H", "Content-Type: application/json", "-H", "Authorization: Bearer "+f.root, f.srv.URL+"/v1/keys").CombinedOutput()
			if err != nil {
				t.Fatalf("curl: %v\n%s", err, out)
			}
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(out)), nil)
			if err != nil {
				t.Fatalf("curl's output: %v\n%s", err, out)
			}
			f.checkTooLarge("POST", "/v1/keys", readResult(t, resp))
		})
	}
	// The server is unharmed, and wrote nothing.
	if res := f.do(call{method: "GET", path: "/v1/keys/" + k.ID, token: f.root}); res.status != http.StatusOK {
		t.Fatalf("after the large bodies: %d", res.status)
	}
	if keys, events := f.count(); keys != 1 || events != 1 {
		t.Fatalf("large bodies wrote %d keys and %d events", keys, events)
	}
}

func readResult(t *testing.T, resp *http.Response) *result {
	t.Helper()
	defer resp.Body.Close()
	res := &result{status: resp.StatusCode, header: resp.Header}
	var err error
	if res.body, err = io.ReadAll(resp.Body); err != nil {
		t.Fatalf("reading the answer's body: %v", err)
	}
	return res
}

// checkTooLarge checks a 413 problem against the OpenAPI document.
func (f *fixture) checkTooLarge(method, path string, res *result) {
	f.t.Helper()
	if res.status != http.StatusRequestEntityTooLarge {
		f.t.Fatalf("%s %s: %d %s, want 413", method, path, res.status, res.body)
	}
	req, _ := http.NewRequest(method, f.srv.URL+path, nil)
	req.Header.Set("Content-Type", "application/json")
	c := call{method: method, path: path, schema: schemaAny}
	f.validateResponse(c, f.validateRequest(req, nil, schemaAny), res)
	res.decode(f.t, &res.problem)
	if res.problem.Type != "urn:keygate:problem:too-large" || !strings.Contains(res.problem.Detail, "65536") {
		f.t.Fatalf("%s %s: %s", method, path, res.body)
	}
}
