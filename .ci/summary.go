//go:build ignore

// Command summary reads the output of `go test -json` runs and prints how
// many tests passed, failed and were skipped in each, how many conformance
// tests ran per store backend, every skipped test with its reason, and the
// output of every test that failed. .ci/run calls it; it exits 1 when a
// test failed.
//
//	go run .ci/summary.go LABEL=FILE...
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
)

// event is one line of `go test -json`.
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

type counts struct{ passed, failed, skipped int }

func main() {
	failed := false
	conformance := map[string]*counts{}
	for _, arg := range os.Args[1:] {
		label, file, ok := strings.Cut(arg, "=")
		if !ok {
			fmt.Fprintln(os.Stderr, "usage: go run .ci/summary.go LABEL=FILE...")
			os.Exit(2)
		}
		c, skips, failures, err := read(file, conformance)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Printf("tests on %s: %d passed, %d failed, %d skipped\n", label, c.passed, c.failed, c.skipped)
		for _, s := range skips {
			fmt.Printf("  skipped %s\n", s)
		}
		for _, f := range failures {
			fmt.Printf("\n--- FAIL %s (%s):\n%s", f.id, label, f.output)
		}
		failed = failed || c.failed > 0
	}
	backends := make([]string, 0, len(conformance))
	for b := range conformance {
		backends = append(backends, b)
	}
	sort.Strings(backends)
	for _, b := range backends {
		c := conformance[b]
		fmt.Printf("conformance suite on %s: %d passed, %d failed, %d skipped\n", b, c.passed, c.failed, c.skipped)
	}
	if failed {
		os.Exit(1)
	}
}

// read counts the tests (subtests included) of one run, and the
// conformance suite's per backend (keystore/<backend>'s TestConformance).
func read(file string, conformance map[string]*counts) (counts, []string, []failure, error) {
	f, err := os.Open(file)
	if err != nil {
		return counts{}, nil, nil, err
	}
	defer f.Close()
	var c counts
	var skips []string
	var failures []failure
	reasons := map[string]string{}
	output := map[string]*strings.Builder{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Test == "" {
			continue
		}
		id := e.Package + "." + e.Test
		switch e.Action {
		case "output":
			if output[id] == nil {
				output[id] = &strings.Builder{}
			}
			output[id].WriteString(e.Output)
			if strings.Contains(e.Output, "skipped:") || strings.Contains(e.Output, "--- SKIP") {
				if r := strings.TrimSpace(e.Output); !strings.HasPrefix(r, "---") {
					reasons[id] = r
				}
			}
			continue
		case "pass":
			c.passed++
		case "fail":
			c.failed++
			if out := output[id]; out != nil {
				failures = append(failures, failure{id, out.String()})
			}
		case "skip":
			c.skipped++
			skips = append(skips, strings.TrimSpace(id+": "+reasons[id]))
		default:
			continue
		}
		if backend, ok := conformanceBackend(e); ok {
			if conformance[backend] == nil {
				conformance[backend] = &counts{}
			}
			switch e.Action {
			case "pass":
				conformance[backend].passed++
			case "fail":
				conformance[backend].failed++
			case "skip":
				conformance[backend].skipped++
			}
		}
	}
	return c, skips, failures, sc.Err()
}

// failure is a failed top-level test and what it printed.
type failure struct{ id, output string }

// conformanceBackend is the backend a conformance subtest ran on.
func conformanceBackend(e event) (string, bool) {
	if !strings.HasPrefix(e.Test, "TestConformance/") {
		return "", false
	}
	i := strings.LastIndex(e.Package, "/keystore/")
	if i < 0 {
		return "", false
	}
	return e.Package[i+len("/keystore/"):], true
}
