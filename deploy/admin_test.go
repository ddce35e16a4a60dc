package deploy

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"

	"github.com/keygate/keygate/admin"
)

// TestKubernetesAdmin: the Deployment turns the admin API and console on,
// with the tokens file from the keygate-admin-tokens Secret (hashes only,
// readable by the server's group), on port 9003 behind the ClusterIP
// Service keygate-admin, which no NetworkPolicy opens; the shipped Secret
// holds a valid, empty tokens file; and the image is the one the README
// says how to build.
func TestKubernetesAdmin(t *testing.T) {
	docs := mustLoad(t)
	var deployment, secret, service map[string]any
	for _, d := range docs {
		switch kind, name := str(d.obj, "kind"), str(d.obj, "metadata", "name"); {
		case kind == "Deployment" && name == "keygate":
			deployment = d.obj
		case kind == "Secret" && name == "keygate-admin-tokens":
			secret = d.obj
		case kind == "Service" && name == "keygate-admin":
			service = d.obj
		}
	}
	if deployment == nil || secret == nil || service == nil {
		t.Fatalf("want the Deployment keygate, the Secret keygate-admin-tokens and the Service keygate-admin")
	}
	pod := get(deployment, "spec", "template", "spec")
	container := get(pod, "containers").([]any)[0]
	env := map[string]string{}
	for _, e := range get(container, "env").([]any) {
		env[str(e, "name")] = str(e, "value")
	}
	if env["KEYGATE_ADMIN_ADDR"] != ":9003" || env["KEYGATE_ADMIN_TOKENS_FILE"] != "/etc/keygate/admin-tokens.yaml" {
		t.Errorf("the admin listener's settings: %v", env)
	}
	mounted := false
	for _, m := range get(container, "volumeMounts").([]any) {
		mounted = mounted || str(m, "mountPath") == "/etc/keygate" && get(m, "readOnly") == true
	}
	fromSecret := false
	for _, v := range get(pod, "volumes").([]any) {
		fromSecret = fromSecret || str(v, "secret", "secretName") == "keygate-admin-tokens"
	}
	if !mounted || !fromSecret || get(pod, "securityContext", "fsGroup") != get(pod, "securityContext", "runAsGroup") {
		t.Errorf("the tokens file must come read-only from the Secret, readable by the server's group")
	}
	if str(get(service, "spec", "ports").([]any)[0], "targetPort") != "admin" || str(service, "spec", "type") != "ClusterIP" {
		t.Errorf("the admin Service: %v", get(service, "spec"))
	}
	file := filepath.Join(t.TempDir(), "admin-tokens.yaml")
	writeFile(t, file, str(secret, "stringData", "admin-tokens.yaml"))
	if _, err := admin.LoadTokens(file); err != nil {
		t.Errorf("the shipped tokens Secret is not a tokens file keygate reads: %v", err)
	}
	for _, c := range get(pod, "containers").([]any) {
		if str(c, "image") != "keygate:local" {
			t.Errorf("image %q: want keygate:local, built by docker build -t keygate:local .", str(c, "image"))
		}
	}
}

// TestComposeAdmin: docker-compose runs the console and admin API on
// 127.0.0.1:9003 with the tokens file the repository ships (empty until
// an admin token is added), and says how to add one.
func TestComposeAdmin(t *testing.T) {
	opts, err := cli.NewProjectOptions([]string{filepath.Join("..", "docker-compose.yaml")}, cli.WithName("keygate"))
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	kg, err := project.GetService("keygate")
	if err != nil {
		t.Fatal(err)
	}
	published := false
	for _, p := range kg.Ports {
		published = published || p.Target == 9003 && p.Published == "9003" && p.HostIP == "127.0.0.1"
	}
	if !published {
		t.Errorf("keygate does not publish the admin port 9003 on 127.0.0.1: %+v", kg.Ports)
	}
	cmd := strings.Join(kg.Command, " ")
	if !strings.Contains(cmd, "--admin-addr=:9003") || !strings.Contains(cmd, "--admin-tokens-file=/etc/keygate/admin-tokens.yaml") {
		t.Errorf("keygate's command %q does not turn the admin listener on", cmd)
	}
	var source string
	for _, v := range kg.Volumes {
		if v.Target == "/etc/keygate/admin-tokens.yaml" {
			source = v.Source
		}
	}
	if source == "" || !slices.Contains([]string{filepath.Join(project.WorkingDir, "deploy", "compose", "admin-tokens.yaml")}, source) {
		t.Fatalf("the tokens file is mounted from %q, want deploy/compose/admin-tokens.yaml", source)
	}
	if _, err := admin.LoadTokens(source); err != nil {
		t.Errorf("deploy/compose/admin-tokens.yaml is not a tokens file keygate reads: %v", err)
	}
}

func writeFile(tb testing.TB, path, content string) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
}
