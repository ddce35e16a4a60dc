package deploy

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"golang.org/x/mod/modfile"
)

// The image's Go toolchain is go.mod's, and it stamps the version and
// commit into the binary.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	mod, err := modfile.ParseLax("go.mod", b, nil)
	if err != nil {
		t.Fatal(err)
	}
	dockerfile, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(dockerfile)
	from := regexp.MustCompile(`(?m)^FROM\s+(?:--platform=\S+\s+)?golang:(\S+)\s+AS build`).FindStringSubmatch(text)
	if from == nil || from[1] != mod.Go.Version {
		t.Fatalf("the build stage's toolchain is %v, go.mod says go %s", from, mod.Go.Version)
	}
	for _, want := range []string{"-X main.version=", "-X main.commit=", "org.opencontainers.image.source", "org.opencontainers.image.revision",
		"USER nonroot", `HEALTHCHECK`, `CMD ["/keygate", "health"]`} {
		if !strings.Contains(text, want) {
			t.Errorf("the Dockerfile has no %q", want)
		}
	}
	ignore, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, line := range strings.Split(string(ignore), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			patterns = append(patterns, line)
		}
	}
	if slices.Contains(patterns, ".git") {
		t.Error(".dockerignore leaves out .git, where the commit to stamp comes from")
	}
}

// docker-compose.yaml loads with the Compose specification's own loader
// (schema-checked), and orders the stack: the database healthy, the
// migration done, keygate healthy (by `keygate health`), then Envoy.
func TestCompose(t *testing.T) {
	opts, err := cli.NewProjectOptions([]string{filepath.Join("..", "docker-compose.yaml")}, cli.WithName("keygate"))
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yaml: %v", err)
	}
	svc := func(name string) types.ServiceConfig {
		s, err := project.GetService(name)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	keygate, migrate, envoy := svc("keygate"), svc("migrate"), svc("envoy")
	if keygate.Image == "" || keygate.Image != migrate.Image {
		t.Errorf("migrate (%q) and keygate (%q) must share one image", migrate.Image, keygate.Image)
	}
	if hc := keygate.HealthCheck; hc == nil || !slices.Equal(hc.Test, types.HealthCheckTest{"CMD", "/keygate", "health"}) {
		t.Errorf("keygate's healthcheck is %+v, want keygate health", hc)
	}
	for _, dep := range []struct {
		svc       types.ServiceConfig
		on, state string
	}{
		{migrate, "postgres", types.ServiceConditionHealthy},
		{keygate, "migrate", types.ServiceConditionCompletedSuccessfully},
		{envoy, "keygate", types.ServiceConditionHealthy},
	} {
		if got := dep.svc.DependsOn[dep.on].Condition; got != dep.state {
			t.Errorf("%s depends on %s with %q, want %q", dep.svc.Name, dep.on, got, dep.state)
		}
	}
	for _, s := range project.Services {
		for _, p := range s.Ports {
			if p.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes port %d on %q; the development stack publishes on 127.0.0.1 only", s.Name, p.Target, p.HostIP)
			}
		}
	}
	if keygate.StopGracePeriod == nil {
		t.Error("keygate has no stop_grace_period longer than its drain and shutdown timeout")
	}
}
