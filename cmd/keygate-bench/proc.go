package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a server process the benchmark started.
type child struct {
	name     string
	cmd      *exec.Cmd
	grpcAddr string
	httpAddr string // keygate only: /metrics
	gc       gcInfo // effective GC settings
	gcKnown  bool
	logGC    string // keygate only: gogc/gomemlimit from its "keygate serving" line, if any
	maxConns int32  // pgx-server only
	dbApp    string // application_name of its database connections, "" if none
	done     chan struct{}
	waitErr  error

	mu       sync.Mutex
	tail     []string // last lines of output, for errors
	warnings []string // the first WARN and ERROR lines of a JSON log
	nwarn    int
}

// startChild starts cmd and waits until ready, fed each line of stdout
// and then of stderr, returns true. The process gets its own process
// group, so that Ctrl-C reaches the benchmark only and the benchmark stops
// its children in order; it is killed if the benchmark dies.
func startChild(ctx context.Context, name string, cmd *exec.Cmd, ready func(line string) bool) (*child, error) {
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	lines := make(chan string, 16)
	var readers sync.WaitGroup
	for _, r := range []io.Reader{stdout, stderr} {
		readers.Go(func() {
			sc := bufio.NewScanner(r)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				c.keep(sc.Text())
				select {
				case lines <- sc.Text():
				default: // nobody waits any more
				}
			}
		})
	}
	go func() {
		readers.Wait() // Wait must not close the pipes under the readers
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	timer := time.NewTimer(60 * time.Second)
	defer timer.Stop()
	for {
		select {
		case line := <-lines:
			if ready(line) {
				return c, nil
			}
		case <-c.done:
			return nil, fmt.Errorf("%s exited at start (%v):\n%s", name, c.waitErr, c.lastLines())
		case <-timer.C:
			c.stop()
			return nil, fmt.Errorf("%s not ready after a minute:\n%s", name, c.lastLines())
		case <-ctx.Done():
			c.stop()
			return nil, ctx.Err()
		}
	}
}

func (c *child) keep(line string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`) {
		if c.nwarn++; len(c.warnings) < 3 {
			c.warnings = append(c.warnings, line)
		}
	}
	c.tail = append(c.tail, line)
	if len(c.tail) > 20 {
		c.tail = c.tail[1:]
	}
}

func (c *child) lastLines() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return "  " + strings.Join(c.tail, "\n  ")
}

// loggedWarnings returns how many WARN and ERROR lines the process
// logged, and the first few.
func (c *child) loggedWarnings() (int, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nwarn, append([]string(nil), c.warnings...)
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// stop asks the process to shut down and kills it if it has not after
// 10s.
func (c *child) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// alive reports an error if the process has exited.
func (c *child) alive() error {
	select {
	case <-c.done:
		return fmt.Errorf("%s exited (%v):\n%s", c.name, c.waitErr, c.lastLines())
	default:
		return nil
	}
}

// startReference starts this binary as a reference server.
func startReference(ctx context.Context, self, kind string, args, env []string) (*child, error) {
	cmd := exec.Command(self, append([]string{kind, "--addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = env
	var ready readyLine
	c, err := startChild(ctx, kind, cmd, func(line string) bool {
		return json.Unmarshal([]byte(line), &ready) == nil && ready.Addr != ""
	})
	if err != nil {
		return nil, err
	}
	c.grpcAddr, c.gc, c.gcKnown, c.maxConns = ready.Addr, ready.GC, true, ready.MaxConns
	return c, nil
}

// servingLine is the part of keygate's "keygate serving" log line the
// benchmark reads.
type servingLine struct {
	Msg        string `json:"msg"`
	GRPCAddr   string `json:"grpc_addr"`
	HTTPAddr   string `json:"http_addr"`
	GOGC       any    `json:"gogc"`
	GOMEMLIMIT any    `json:"gomemlimit"`
}

// startKeygate starts keygate serve and reads its effective GC settings
// from its /metrics.
func startKeygate(ctx context.Context, bin, name, databaseURL string, args, env []string) (*child, error) {
	cmd := exec.Command(bin, append([]string{"serve", "--database-url", databaseURL,
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log-format", "json"}, args...)...)
	cmd.Env = env
	var sl servingLine
	c, err := startChild(ctx, name, cmd, func(line string) bool {
		sl = servingLine{}
		return json.Unmarshal([]byte(line), &sl) == nil && sl.Msg == "keygate serving"
	})
	if err != nil {
		return nil, err
	}
	c.grpcAddr, c.httpAddr = sl.GRPCAddr, sl.HTTPAddr
	if sl.GOGC != nil || sl.GOMEMLIMIT != nil {
		c.logGC = fmt.Sprintf("its log says gogc=%v gomemlimit=%v", sl.GOGC, sl.GOMEMLIMIT)
	}
	m, err := c.scrape(ctx)
	if err != nil {
		c.stop()
		return nil, err
	}
	c.gc = gcInfo{GOGCEnv: envValue(env, "GOGC"), GOMEMLIMITEnv: envValue(env, "GOMEMLIMIT")}
	gogc, ok1 := m["go_gc_gogc_percent"]
	limit, ok2 := m["go_gc_gomemlimit_bytes"]
	procs, ok3 := m["go_sched_gomaxprocs_threads"]
	if ok1 && ok2 && ok3 {
		c.gcKnown = true
		c.gc.GOGC, c.gc.GOMAXPROCS = int64(gogc), int64(procs)
		c.gc.GOMEMLIMIT = math.MaxInt64
		if limit < math.MaxInt64 {
			c.gc.GOMEMLIMIT = int64(limit)
		}
	}
	return c, nil
}

// scrape reads keygate's /metrics: the unlabelled samples, by name.
func (c *child) scrape(ctx context.Context) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.httpAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: /metrics: %w", c.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: /metrics: %s", c.name, resp.Status)
	}
	return parseMetrics(resp.Body)
}

// parseMetrics reads the samples of the Prometheus text format, by name
// and labels as written (`name` or `name{label="value"}`).
func parseMetrics(r io.Reader) (map[string]float64, error) {
	m := map[string]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		split := strings.IndexByte(line, ' ')
		if i := strings.LastIndexByte(line, '}'); i >= 0 {
			split = i + 1
		}
		if split <= 0 || split >= len(line) {
			continue
		}
		name, value := line[:split], line[split:]
		if len(strings.Fields(value)) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(strings.Fields(value)[0], 64); err == nil {
			m[name] = v
		}
	}
	return m, sc.Err()
}

// childEnv is the environment of the servers: the benchmark's, without
// KEYGATE_* (only the benchmark's flags configure keygate), with GOGC and
// GOMEMLIMIT overridden when the flags set them.
func childEnv(cfg *config) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "KEYGATE_"):
		case k == "GOGC" && cfg.gogc != "", k == "GOMEMLIMIT" && cfg.gomemlimit != "":
		default:
			env = append(env, kv)
		}
	}
	if cfg.gogc != "" {
		env = append(env, "GOGC="+cfg.gogc)
	}
	if cfg.gomemlimit != "" {
		env = append(env, "GOMEMLIMIT="+cfg.gomemlimit)
	}
	return env
}

func envValue(env []string, key string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}

// clockTick is the unit of utime and stime in /proc/PID/stat.
var clockTick = func() time.Duration {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if hz, err := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && hz > 0 {
			return time.Second / time.Duration(hz)
		}
	}
	return 10 * time.Millisecond // USER_HZ is 100 on every Linux port Go supports
}()

// procCPU is the CPU time (user+system, every thread) process pid has
// used, and its command name.
func procCPU(pid int) (time.Duration, string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, "", err
	}
	return parseStat(b)
}

// parseStat reads utime and stime from a /proc/PID/stat line: fields 14
// and 15, counted after the command name, which may hold spaces and
// parentheses.
func parseStat(b []byte) (time.Duration, string, error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return 0, "", errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[end+1:])) // f[0] is field 3
	if len(f) < 13 {
		return 0, "", errors.New("short /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, "", err
	}
	return time.Duration(ut+st) * clockTick, string(b[open+1 : end]), nil
}

// machineCPU is the CPU time every CPU of the machine has spent busy
// (user, nice, system, irq, softirq) and the time the hypervisor stole,
// from the first line of /proc/stat.
func machineCPU() (busy, steal time.Duration, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, errors.New("malformed /proc/stat")
	}
	var v [8]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return 0, 0, err
		}
	}
	// user nice system idle iowait irq softirq steal
	return time.Duration(v[0]+v[1]+v[2]+v[5]+v[6]) * clockTick, time.Duration(v[7]) * clockTick, nil
}

// selfCPU is the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
