package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	toml "github.com/pelletier/go-toml/v2"
	yaml3 "go.yaml.in/yaml/v3"

	"github.com/keygate/keygate/keystore"
)

// keyPattern is the regex every shipped rule holds: "kg_", 33 base62
// characters, and a 6-character base62 checksum no greater than 2^32-1
// (4gfFC3), the largest CRC32.
const keyPattern = `kg_[0-9A-Za-z]{33}(?:[0-3][0-9A-Za-z]{5}|4[0-9A-Za-f][0-9A-Za-z]{4}|4g[0-9A-Za-e][0-9A-Za-z]{3}|4gf[0-9A-E][0-9A-Za-z]{2}|4gfF[0-9AB][0-9A-Za-z]|4gfFC[0-3])`

// fixture is a tree of files holding real keygate keys and look-alikes.
type fixture struct {
	dir        string
	real       []string            // well-formed keys: every rule must find each
	lookAlikes map[string][]string // by kind: no rule may find one
	// inRange are look-alikes whose wrong checksum is a value a CRC32
	// can have: no regular expression can tell them from keys (they are
	// counted, and keygate refuses them without a lookup).
	inRange []string
}

// base62 is keygate's alphabet, in its order (which is ASCII's).
const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func newSecretFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), lookAlikes: map[string][]string{}}
	for range 40 {
		s, err := keystore.GenerateSecret("kg")
		if err != nil {
			t.Fatal(err)
		}
		f.real = append(f.real, s.Reveal())
	}
	for i, k := range f.real[:20] {
		body, sum := k[3:36], k[36:]
		// A checksum above 2^32-1: no CRC32 has it.
		high := string(base62[5+i%57]) + sum[1:]
		f.lookAlikes["checksum out of range"] = append(f.lookAlikes["checksum out of range"], "kg_"+body+high)
		f.lookAlikes["checksum just over the largest CRC32"] = append(f.lookAlikes["checksum just over the largest CRC32"],
			"kg_"+body+[]string{"4gfFC4", "4gfFD0", "4gfG00", "4gg000", "4h0000", "z00000"}[i%6])
		f.lookAlikes["one character short"] = append(f.lookAlikes["one character short"], k[:len(k)-1])
		f.lookAlikes["one character long"] = append(f.lookAlikes["one character long"], k+"x")
		f.lookAlikes["another prefix"] = append(f.lookAlikes["another prefix"], "kx"+k[2:], "Kg"+k[2:], "kg-"+k[3:])
		f.lookAlikes["not base62"] = append(f.lookAlikes["not base62"], k[:10]+"-"+k[11:], k[:20]+"+"+k[21:])
		f.lookAlikes["inside a longer token"] = append(f.lookAlikes["inside a longer token"], "x"+k, "my"+k+"y")
		// A mistyped body: the checksum no longer matches, but it is still
		// a value a CRC32 can have.
		c := body[5]
		c2 := byte('A')
		if c == 'A' {
			c2 = 'B'
		}
		mistyped := "kg_" + body[:5] + string(c2) + body[6:] + sum
		if _, err := keystore.ParseSecret(mistyped); err == nil {
			t.Fatal("a mistyped key passed keygate's checksum")
		}
		f.inRange = append(f.inRange, mistyped)
	}
	for _, lookAlike := range slices.Concat(flatten(f.lookAlikes), f.inRange) {
		if _, err := keystore.ParseSecret(lookAlike); err == nil {
			t.Fatalf("look-alike %s is a well-formed key", lookAlike)
		}
	}
	// The files: keys in the shapes they leak in.
	write := func(name string, lines []string, format string) {
		var b strings.Builder
		for i, l := range lines {
			fmt.Fprintf(&b, format, i, l)
		}
		if err := os.WriteFile(filepath.Join(f.dir, name), []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(".env", f.real[:10], "KEYGATE_API_KEY_%d=%s\n")
	write("config.yaml", f.real[10:20], "key%d: %q\n")
	write("client.go", f.real[20:30], "var apiKey%d = \"%s\"\n")
	write("curl.sh", f.real[30:], "curl -H 'x-api-key: %[2]s' https://api.example.com/v1/projects # %[1]d\n")
	var i int
	for kind, ls := range f.lookAlikes {
		write(fmt.Sprintf("lookalikes-%d.env", i), ls, "# "+kind+"\nNOT_A_KEY_%d=%s\n")
		i++
	}
	write("mistyped.txt", f.inRange, "key %d: %s\n")
	return f
}

func flatten(m map[string][]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v...)
	}
	return out
}

// TestShippedRulesAgree: the gitleaks rule, the TruffleHog detector and
// the GitHub custom pattern hold the one keygate key pattern.
func TestShippedRulesAgree(t *testing.T) {
	var gl struct {
		Rules []struct {
			ID       string   `toml:"id"`
			Regex    string   `toml:"regex"`
			Keywords []string `toml:"keywords"`
		} `toml:"rules"`
	}
	b, err := os.ReadFile("secret-scanning/gitleaks.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := toml.Unmarshal(b, &gl); err != nil {
		t.Fatal(err)
	}
	var th struct {
		Detectors []struct {
			Keywords []string
			Regex    map[string]string
		}
	}
	var gh struct {
		SecretFormat string `yaml:"secret_format"`
		TestString   string `yaml:"test_string"`
	}
	for path, v := range map[string]any{"secret-scanning/trufflehog.yaml": &th, "secret-scanning/github-custom-pattern.yaml": &gh} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml3.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	wrapped := `\b(` + keyPattern + `)\b`
	if len(gl.Rules) != 1 || gl.Rules[0].Regex != wrapped || !slices.Equal(gl.Rules[0].Keywords, []string{"kg_"}) {
		t.Errorf("gitleaks.toml's rule %+v, want the regex %s", gl.Rules, wrapped)
	}
	if len(th.Detectors) != 1 || th.Detectors[0].Regex["key"] != wrapped {
		t.Errorf("trufflehog.yaml's detector %+v, want the regex %s", th.Detectors, wrapped)
	}
	if gh.SecretFormat != keyPattern {
		t.Errorf("github-custom-pattern.yaml's secret format %q, want %s", gh.SecretFormat, keyPattern)
	}
	if _, err := keystore.ParseSecret(strings.TrimPrefix(gh.TestString, "KEYGATE_API_KEY=")); err != nil {
		t.Errorf("the GitHub pattern's test string does not hold a well-formed key: %v", err)
	}
	// The checksum bound is the largest CRC32 in base62.
	max, v := "", uint64(1<<32-1)
	for range 6 {
		max = string(base62[v%62]) + max
		v /= 62
	}
	if max != "4gfFC3" || !strings.Contains(keyPattern, "4gfFC[0-3]") {
		t.Fatalf("the largest CRC32 is %s in base62", max)
	}
}

// TestRegexOnFixture runs the pattern, as Go's regexp (the engine of
// TruffleHog and of gitleaks' default build) reads it, over the fixture.
func TestRegexOnFixture(t *testing.T) {
	f := newSecretFixture(t)
	re := regexp.MustCompile(`\b(` + keyPattern + `)\b`)
	found := map[string]bool{}
	entries, _ := os.ReadDir(f.dir)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(f.dir, e.Name()))
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			found[m[1]] = true
		}
	}
	checkFound(t, "the regex", f, found)
}

// TestGitleaksOnFixture runs the real gitleaks (the go.mod tool, `go tool
// gitleaks`) with the shipped rule over files holding real keygate keys
// and look-alikes: every real key is found, and no look-alike whose
// checksum a regular expression can tell wrong.
func TestGitleaksOnFixture(t *testing.T) {
	if testing.Short() {
		t.Skip("builds gitleaks")
	}
	f := newSecretFixture(t)
	report := filepath.Join(t.TempDir(), "report.json")
	config, _ := filepath.Abs("secret-scanning/gitleaks.toml")
	cmd := exec.Command("go", "tool", "gitleaks", "dir", "--config", config, "--report-format", "json", "--report-path", report,
		"--no-banner", "--exit-code", "0", "--log-level", "error", f.dir)
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go tool gitleaks: %v\n%s", err, out)
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var findings []struct {
		RuleID string
		Secret string
		File   string
	}
	if err := json.Unmarshal(b, &findings); err != nil {
		t.Fatalf("gitleaks' report: %v\n%s", err, b)
	}
	found := map[string]bool{}
	for _, fd := range findings {
		if fd.RuleID == "keygate-api-key" {
			found[fd.Secret] = true
		}
	}
	checkFound(t, "gitleaks", f, found)
}

// checkFound compares what a scanner found with the fixture, and logs the
// figures.
func checkFound(t *testing.T, scanner string, f *fixture, found map[string]bool) {
	t.Helper()
	realFound := 0
	for _, k := range f.real {
		if found[k] {
			realFound++
		} else {
			t.Errorf("%s missed a real key (%s…)", scanner, k[:12])
		}
	}
	lookAlikes, lookAlikesFound := 0, 0
	for kind, ls := range f.lookAlikes {
		for _, l := range ls {
			lookAlikes++
			if found[l] {
				lookAlikesFound++
				t.Errorf("%s found a look-alike (%s): %s", scanner, kind, l)
			}
		}
	}
	inRangeFound := 0
	for _, l := range f.inRange {
		if found[l] {
			inRangeFound++
		}
	}
	t.Logf("%s: %d of %d real keys found; %d of %d look-alikes found; %d of %d mistyped keys whose wrong checksum is in range found "+
		"(no regular expression can compute a CRC32; keygate refuses them without a lookup)",
		scanner, realFound, len(f.real), lookAlikesFound, lookAlikes, inRangeFound, len(f.inRange))
}
