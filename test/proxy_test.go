//go:build unix

package test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/needs"
)

// This file runs real HTTP proxies (nginx, Caddy) from the shipped
// configurations in front of keygate's forward-auth endpoint and a Go
// upstream that records every request reaching it.

// upstream is the protected API: it answers 200 "upstream" and records
// each request as it arrived.
type upstream struct {
	addr string
	stop func() // closes its listener and connections
	mu   sync.Mutex
	seen []arrival
}

// arrival is one request the upstream received.
type arrival struct {
	method, target string // target: the raw request target
	header         http.Header
}

// startUpstream starts the recording upstream on 127.0.0.1.
func startUpstream(tb testing.TB) *upstream {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	u := &upstream{addr: lis.Addr().String()}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, arrival{r.Method, r.RequestURI, r.Header.Clone()})
		u.mu.Unlock()
		_, _ = io.WriteString(w, "upstream")
	})}
	go func() { _ = srv.Serve(lis) }()
	u.stop = func() { srv.Close() }
	tb.Cleanup(u.stop)
	return u
}

// count is the number of requests received so far.
func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen)
}

// since returns the requests received after the first n.
func (u *upstream) since(n int) []arrival {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]arrival(nil), u.seen[n:]...)
}

// reply is a response as a client read it.
type reply struct {
	status int
	header http.Header
	body   string
}

func (r reply) String() string {
	return fmt.Sprintf("%d %q (www-authenticate %q, retry-after %q)", r.status, r.body, r.header.Get("www-authenticate"), r.header.Get("retry-after"))
}

// send writes one HTTP/1.1 request to addr with the request target exactly
// as given (no client library cleans or encodes it) and reads the answer.
// headers are sent in order, names as spelled.
func send(tb testing.TB, addr, method, target string, headers [][2]string) reply {
	tb.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tb.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n", method, target)
	for _, h := range headers {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(conn, b.String()); err != nil {
		tb.Fatalf("write to %s: %v", addr, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		tb.Fatalf("%s %q via %s: reading the response: %v", method, target, addr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, string(body)}
}

// freeAddr returns a 127.0.0.1 address with a port free a moment ago.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().String()
}

// repoFile reads a file of the repository (tests run in test/).
func repoFile(tb testing.TB, rel string) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", rel))
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// envsubst replaces ${NAME} for exactly the given variables, as
// `envsubst '${A} ${B}'` does (the file's other $ are nginx's), and fails
// if any of them is not set or a ${…} is left.
func envsubst(tb testing.TB, text string, vars map[string]string) string {
	tb.Helper()
	for name, value := range vars {
		placeholder := "${" + name + "}"
		if !strings.Contains(text, placeholder) {
			tb.Fatalf("the template does not use %s", placeholder)
		}
		text = strings.ReplaceAll(text, placeholder, value)
	}
	if i := strings.Index(text, "${"); i >= 0 {
		tb.Fatalf("the rendered template still has %q", text[i:min(len(text), i+30)])
	}
	return text
}

// proxyProc is a proxy process of a test's own.
type proxyProc struct {
	name, addr string // addr: where clients connect
	dir        string // its prefix: configuration, pid file, logs
	log        func() string
	// refused are look-alikes the proxy makes keygate refuse, and why.
	refused map[string]string
}

// findBinary returns the path of a proxy's binary, or ends tb for want of
// it (package needs: skipped outside CI, failed in CI).
func findBinary(tb testing.TB, name, install string, fallbacks ...string) string {
	tb.Helper()
	return needs.Program(tb, name, install, fallbacks...)
}

// unprivileged returns credentials to run a proxy with when the tests run
// as root (CI does), and chowns dir to them: the proxies run as nobody,
// never as root. It returns nil when the tests are not root.
func unprivileged(tb testing.TB, dir string) *syscall.Credential {
	tb.Helper()
	if os.Getuid() != 0 {
		return nil
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		tb.Fatalf("running as root, and no user nobody to run the proxy as: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	err = filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		tb.Fatal(err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// startProxy runs cmd (in its own process group, as nobody when root) and
// waits until addr accepts connections. The process is stopped when the
// test ends; its log is shown if the test failed.
func startProxy(tb testing.TB, p *proxyProc, cmd *exec.Cmd) *proxyProc {
	tb.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: unprivileged(tb, p.dir)}
	out, err := os.Create(filepath.Join(p.dir, "stdout.log"))
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting %s: %v", p.name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); out.Close() }()
	tb.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if tb.Failed() {
			tb.Logf("%s log:\n%s", p.name, p.log())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", p.addr, time.Second); err == nil {
			c.Close()
			return p
		}
		select {
		case err := <-exited:
			tb.Fatalf("%s exited before listening on %s: %v\n%s", p.name, p.addr, err, p.log())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s does not listen on %s after 15s:\n%s", p.name, p.addr, p.log())
		}
	}
}

// tail returns the end of the files named, for failure messages.
func tail(paths ...string) string {
	var b strings.Builder
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		fmt.Fprintf(&b, "--- %s\n%s\n", filepath.Base(p), strings.Join(lines[max(0, len(lines)-30):], "\n"))
	}
	return b.String()
}

// proxyDir returns a new directory for a proxy of the test's own: a
// top-level temporary directory (t.TempDir's parent is closed to other
// users, and the proxy may run as nobody), removed when the test ends.
func proxyDir(tb testing.TB, name string) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", "keygate-"+name+"-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// nginxModule is Debian's headers-more module, which the template needs.
const nginxModule = "/usr/lib/nginx/modules/ngx_http_headers_more_filter_module.so"

// startNginx runs nginx with deploy/nginx/keygate.conf.template rendered
// with its three variables, included in an http {} block of its own
// prefix directory (pid file, logs and temporary files there).
func startNginx(tb testing.TB, keygateHTTP, upstreamAddr string) *proxyProc {
	tb.Helper()
	const install = "apt-get install nginx libnginx-mod-http-headers-more-filter"
	bin := findBinary(tb, "nginx", install, "/usr/sbin/nginx")
	if _, err := os.Stat(nginxModule); err != nil {
		needs.Missing(tb, "nginx's headers-more module ("+nginxModule+")", install)
	}
	dir := proxyDir(tb, "nginx")
	p := &proxyProc{name: "nginx", addr: freeAddr(tb), dir: dir}
	p.log = func() string {
		return tail(filepath.Join(dir, "error.log"), filepath.Join(dir, "access.log"), filepath.Join(dir, "stdout.log"))
	}
	server := envsubst(tb, repoFile(tb, "deploy/nginx/keygate.conf.template"), map[string]string{
		"LISTEN_PORT": p.addr, "KEYGATE_HTTP_ADDR": keygateHTTP, "UPSTREAM_ADDR": upstreamAddr,
	})
	main := fmt.Sprintf(`load_module %s;
daemon off;
master_process off;
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log info;
events { worker_connections 256; }
http {
    access_log %[2]s/access.log;
    client_body_temp_path %[2]s/client_body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
    include %[2]s/keygate.conf;
}
`, nginxModule, dir)
	for name, text := range map[string]string{"keygate.conf": server, "nginx.conf": main} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "nginx.conf")
	check := exec.Command(bin, "-t", "-q", "-p", dir, "-c", conf)
	check.SysProcAttr = &syscall.SysProcAttr{Credential: unprivileged(tb, dir)}
	if out, err := check.CombinedOutput(); err != nil {
		tb.Fatalf("nginx -t rejects the rendered template: %v\n%s", err, out)
	}
	return startProxy(tb, p, exec.Command(bin, "-p", dir, "-c", conf))
}

// startCaddy runs Caddy with deploy/caddy/Caddyfile as shipped (copied
// byte for byte into a directory of its own, which nobody can read), its
// variables in the environment, and its data and configuration
// directories in that directory too.
func startCaddy(tb testing.TB, keygateHTTP, upstreamAddr string) *proxyProc {
	tb.Helper()
	bin := findBinary(tb, "caddy", "apt-get install caddy", "/usr/bin/caddy")
	dir := proxyDir(tb, "caddy")
	p := &proxyProc{name: "caddy", addr: freeAddr(tb), dir: dir, refused: map[string]string{
		"/api/v1/projects#/api/v1/users": "a raw '#' is no part of a request target (no client sends a fragment); " +
			"Caddy re-encodes it as %23 in X-Forwarded-Uri, which keygate refuses as ambiguous (400): over-blocking, not a leak",
	}}
	p.log = func() string { return tail(filepath.Join(dir, "stdout.log")) }
	conf := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(conf, []byte(repoFile(tb, "deploy/caddy/Caddyfile")), 0o644); err != nil {
		tb.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(p.addr)
	cmd := exec.Command(bin, "run", "--config", conf, "--adapter", "caddyfile", "--pidfile", filepath.Join(dir, "caddy.pid"))
	cmd.Env = append(os.Environ(), "LISTEN_PORT="+port, "LISTEN_HOST="+host,
		"KEYGATE_HTTP_ADDR="+keygateHTTP, "UPSTREAM_ADDR="+upstreamAddr,
		"HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	return startProxy(tb, p, cmd)
}
