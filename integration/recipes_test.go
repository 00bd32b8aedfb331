package integration

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/pgtestproxy/pgtestproxy/internal/testpg"
)

// The CI recipes under examples/ci, as far as this machine can run them: each file is
// parsed, checked against the binary's flags and the Dockerfile, and its shell steps run
// in a sample project against a real server, with the binary built from this tree in
// place of the install step (`go install …@latest` needs the network).

const (
	recipesDir = "../examples/ci"
	// installCmd starts the install step of every binary-based recipe.
	installCmd = "go install github.com/pgtestproxy/pgtestproxy/cmd/pgtestproxy@"
	// recipeOK is what the sample project's `make test` prints when it reached a
	// migrated database.
	recipeOK = "recipe ok: alice"
)

// ghWorkflow is the part of a GitHub Actions workflow the recipes use; decoding with
// known fields only, a misspelt key fails the test.
type ghWorkflow struct {
	Name string           `yaml:"name"`
	On   any              `yaml:"on"`
	Jobs map[string]ghJob `yaml:"jobs"`
}

type ghJob struct {
	RunsOn   string               `yaml:"runs-on"`
	Env      map[string]string    `yaml:"env"`
	Services map[string]ghService `yaml:"services"`
	Steps    []ghStep             `yaml:"steps"`
}

type ghService struct {
	Image   string            `yaml:"image"`
	Ports   []string          `yaml:"ports"`
	Env     map[string]string `yaml:"env"`
	Volumes []string          `yaml:"volumes"`
	Options string            `yaml:"options"`
}

type ghStep struct {
	Name string            `yaml:"name"`
	Uses string            `yaml:"uses"`
	With map[string]string `yaml:"with"`
	Env  map[string]string `yaml:"env"`
	Run  string            `yaml:"run"`
}

// gitlabJob is one job of a .gitlab-ci.yml.
type gitlabJob struct {
	Image        string            `yaml:"image"`
	Variables    map[string]string `yaml:"variables"`
	BeforeScript []string          `yaml:"before_script"`
	Script       []string          `yaml:"script"`
}

// decodeYAML reads a recipe into v, refusing keys v does not know.
func decodeYAML(t *testing.T, name string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(recipesDir, name))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// onlyJob returns the workflow's single job.
func onlyJob(t *testing.T, w ghWorkflow) ghJob {
	t.Helper()
	if len(w.Jobs) != 1 {
		t.Fatalf("want one job, have %d", len(w.Jobs))
	}
	for _, j := range w.Jobs {
		if j.RunsOn == "" || len(j.Steps) == 0 {
			t.Fatalf("job without runs-on or steps: %+v", j)
		}
		return j
	}
	panic("unreachable")
}

// sampleProject is a checkout as the recipes expect one: db/migrations (a users table
// with alice in it) and a Makefile whose test target queries it through DATABASE_URL.
func sampleProject(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(migrationsDir(t), filepath.Join(dir, "db", "migrations")); err != nil {
		t.Fatal(err)
	}
	mk := "test:\n\tpsql \"$$DATABASE_URL\" -X -At -v ON_ERROR_STOP=1 -c \"SELECT 'recipe ok: ' || name FROM users\"\n"
	if err := os.WriteFile(filepath.Join(dir, "Makefile"), []byte(mk), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// installed stands in for the install step: a GOPATH whose bin holds the binary under
// test, as `go install …/cmd/pgtestproxy@VERSION` leaves it.
func installed(t *testing.T) (gopath string) {
	t.Helper()
	gopath = t.TempDir()
	if err := os.Mkdir(filepath.Join(gopath, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(binary, filepath.Join(gopath, "bin", "pgtestproxy")); err != nil {
		t.Fatal(err)
	}
	return gopath
}

// shell runs script with bash -e in dir, as CI runners run a step, and returns its
// combined output; a failing script fails t.
func shell(t *testing.T, dir string, env []string, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-c", script)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("step %q: %v; output:\n%s", script, err, out)
	}
	return string(out)
}

// stepEnv is the environment of a step: this process's (without libpq and proxy
// variables), GOPATH and PATH as after the install step, then the recipe's variables.
func stepEnv(gopath string, onPath bool, vars ...map[string]string) []string {
	env := append(cleanEnv(), "GOPATH="+gopath)
	if onPath {
		env = append(env, "PATH="+filepath.Join(gopath, "bin")+":"+os.Getenv("PATH"))
	}
	for _, m := range vars {
		for k, v := range m {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// wantOK fails t unless out shows the sample project's test reached its database.
func wantOK(t *testing.T, out string) {
	t.Helper()
	if !strings.Contains(out, recipeOK) {
		t.Fatalf("the sample project's test did not reach a migrated database; output:\n%s", out)
	}
}

// TestRecipeGitHubActionsUpstream runs the workflow with the runner's PostgreSQL: the
// test server stands in for it, the built binary for the install step.
func TestRecipeGitHubActionsUpstream(t *testing.T) {
	t.Parallel()
	var w ghWorkflow
	decodeYAML(t, "github-actions-upstream.yml", &w)
	job := onlyJob(t, w)
	upstream, err := url.Parse(job.Env["PGTESTPROXY_UPSTREAM"])
	if err != nil || upstream.User == nil {
		t.Fatalf("job env PGTESTPROXY_UPSTREAM %q: want a postgres:// URL with a user (%v)", job.Env["PGTESTPROXY_UPSTREAM"], err)
	}
	dir, gopath := sampleProject(t), installed(t)
	env := map[string]string{"PGTESTPROXY_UPSTREAM": testpg.AdminURL(t)}
	var ran []string
	for _, s := range job.Steps {
		switch {
		case s.Uses != "":
			if s.Run != "" {
				t.Fatalf("step %q has both uses and run", s.Name)
			}
		case s.Name == "Start the runner's PostgreSQL":
			role := "CREATE ROLE " + upstream.User.Username() + " LOGIN CREATEDB PASSWORD '"
			if pw, _ := upstream.User.Password(); !strings.Contains(s.Run, role+pw+"'") {
				t.Fatalf("step %q does not make the role PGTESTPROXY_UPSTREAM logs in as (%s…)", s.Name, role)
			}
			ran = append(ran, s.Name) // the test server is already running
		case s.Name == "Install pgtestproxy":
			if !strings.HasPrefix(s.Run, installCmd) {
				t.Fatalf("step %q: %q is not %s…", s.Name, s.Run, installCmd)
			}
			ran = append(ran, s.Name) // installed() stands in
		default:
			wantOK(t, shell(t, dir, stepEnv(gopath, true, job.Env, env, s.Env), s.Run))
			ran = append(ran, s.Name)
		}
	}
	if want := []string{"Start the runner's PostgreSQL", "Install pgtestproxy", "Test"}; !slices.Equal(ran, want) {
		t.Fatalf("steps run: %q, want %q", ran, want)
	}
}

// TestRecipeGitLab runs the job's script with the binary's embedded server, as in the
// job's container; the apt-get and go install lines are what this machine has already.
func TestRecipeGitLab(t *testing.T) {
	t.Parallel()
	var jobs map[string]gitlabJob
	decodeYAML(t, "gitlab-ci.yml", &jobs)
	job, ok := jobs["test"]
	if !ok || job.Image == "" || len(job.Script) == 0 {
		t.Fatalf("want a job test with an image and a script: %+v", jobs)
	}
	var installs int
	for _, line := range job.BeforeScript {
		switch {
		case strings.HasPrefix(line, installCmd):
			installs++
		case strings.HasPrefix(line, "apt-get update") && strings.Contains(line, "apt-get install") &&
			strings.HasSuffix(line, " postgresql"):
		default:
			t.Fatalf("before_script line %q is neither the install of pgtestproxy nor of postgresql", line)
		}
	}
	if installs != 1 {
		t.Fatalf("before_script installs pgtestproxy %d times, want once", installs)
	}
	dir, gopath := sampleProject(t), installed(t)
	env := stepEnv(gopath, true, job.Variables, map[string]string{"PGTESTPROXY_DATA_DIR": scratchDataDir(t)})
	wantOK(t, shell(t, dir, env, strings.Join(job.Script, "\n")))
}

// TestRecipePlain runs examples/ci/plain.sh, its go install line left out: the rest,
// PATH from `go env GOPATH` included, runs as written.
func TestRecipePlain(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join(recipesDir, "plain.sh"))
	if err != nil {
		t.Fatal(err)
	}
	var script []string
	var installs int
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, installCmd) {
			installs++
			continue
		}
		script = append(script, line)
	}
	if installs != 1 {
		t.Fatalf("plain.sh installs pgtestproxy %d times, want once", installs)
	}
	dir, gopath := sampleProject(t), installed(t)
	env := stepEnv(gopath, false, map[string]string{"PGTESTPROXY_DATA_DIR": scratchDataDir(t)})
	wantOK(t, shell(t, dir, env, strings.Join(script, "")))
}

// TestRecipeInstallPath checks what `go install …/cmd/pgtestproxy@VERSION` needs of
// go.mod: the module path the recipes name, and no replace or exclude directive (with
// one, go install of a version refuses the module).
func TestRecipeInstallPath(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	module := strings.TrimSuffix(strings.TrimPrefix(installCmd, "go install "), "/cmd/pgtestproxy@")
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "module":
			if len(f) != 2 || f[1] != module {
				t.Fatalf("go.mod: %q, the recipes install %s", strings.TrimSpace(line), module)
			}
		case "replace", "exclude":
			t.Fatalf("go.mod has %q: go install %s/cmd/pgtestproxy@VERSION would refuse the module", strings.TrimSpace(line), module)
		}
	}
}

// dockerStage is one stage of the Dockerfile: its FROM line and ENV settings.
type dockerStage struct {
	from string
	env  map[string]string
}

// dockerStages parses the Dockerfile's FROM and ENV instructions (KEY=VALUE form, with
// line continuations), in order.
func dockerStages(t *testing.T) []dockerStage {
	t.Helper()
	f, err := os.Open("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stages []dockerStage
	var inst string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if inst == "" && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if more, ok := strings.CutSuffix(line, `\`); ok {
			inst += more + " "
			continue
		}
		inst += line
		word, rest, _ := strings.Cut(inst, " ")
		switch strings.ToUpper(word) {
		case "FROM":
			stages = append(stages, dockerStage{from: rest, env: map[string]string{}})
		case "ENV":
			for _, kv := range strings.Fields(rest) {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || len(stages) == 0 {
					t.Fatalf("Dockerfile: ENV %q: want KEY=VALUE inside a stage", rest)
				}
				stages[len(stages)-1].env[k] = v
			}
		}
		inst = ""
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return stages
}

// imageEnv is the ENV of the image's default target: the Dockerfile's last stage, the
// one with the PostgreSQL server.
func imageEnv(t *testing.T) map[string]string {
	t.Helper()
	stages := dockerStages(t)
	if len(stages) == 0 || !strings.HasSuffix(stages[len(stages)-1].from, " AS embedded") {
		t.Fatalf("Dockerfile: the last stage (the default target) should be the embedded one: %+v", stages)
	}
	return stages[len(stages)-1].env
}

// flagNames are the flags `pgtestproxy serve` accepts, from its -h output.
func flagNames(t *testing.T) map[string]bool {
	t.Helper()
	_, errs, code := command(t, nil, "serve", "-h")
	if code != 0 {
		t.Fatalf("serve -h exited %d:\n%s", code, errs)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z-]+)`).FindAllStringSubmatch(errs, -1) {
		names[m[1]] = true
	}
	if !names["listen"] {
		t.Fatalf("no flags found in serve -h:\n%s", errs)
	}
	return names
}

// checkProxyEnv fails t for a PGTESTPROXY_ variable that names no flag.
func checkProxyEnv(t *testing.T, where string, env map[string]string, flags map[string]bool) {
	t.Helper()
	for k := range env {
		name, ok := strings.CutPrefix(k, "PGTESTPROXY_")
		if ok && !flags[strings.ReplaceAll(strings.ToLower(name), "_", "-")] {
			t.Errorf("%s sets %s, which names no flag of pgtestproxy serve", where, k)
		}
	}
}

// TestImageListenNeedsPassword: the image listens on every interface of the container,
// so it must leave the choice between a password and the explicit opt-out to whoever
// runs it, and the binary must refuse to start with the image's settings alone.
func TestImageListenNeedsPassword(t *testing.T) {
	t.Parallel()
	env := imageEnv(t)
	checkProxyEnv(t, "Dockerfile", env, flagNames(t))
	host, _, err := net.SplitHostPort(env["PGTESTPROXY_LISTEN"])
	if err != nil || host != "0.0.0.0" {
		t.Fatalf("image PGTESTPROXY_LISTEN %q: want 0.0.0.0:PORT (%v)", env["PGTESTPROXY_LISTEN"], err)
	}
	for _, k := range []string{"PGTESTPROXY_PASSWORD", "PGTESTPROXY_ALLOW_NON_LOOPBACK"} {
		if _, ok := env[k]; ok {
			t.Fatalf("the image sets %s: a published port would accept anyone by default", k)
		}
	}
	vars := []string{"PGTESTPROXY_LISTEN=" + env["PGTESTPROXY_LISTEN"], "PGTESTPROXY_MIGRATIONS=" + t.TempDir()}
	_, errs, code := command(t, vars, "serve", "--upstream="+testpg.AdminURL(t), "--pool-size=0")
	if code == 0 || !strings.Contains(errs, "non-loopback") {
		t.Fatalf("serve with the image's settings exited %d, want a refusal of the non-loopback listen; stderr:\n%s", code, errs)
	}
}

// TestRecipeGitHubActionsService checks the service container against the image and the
// binary, then plays it: the binary with the image's and the service's settings (paths
// mapped to this machine, the listen address to loopback) serves the Test step.
func TestRecipeGitHubActionsService(t *testing.T) {
	t.Parallel()
	var w ghWorkflow
	decodeYAML(t, "github-actions-service.yml", &w)
	job := onlyJob(t, w)
	svc, ok := job.Services["pgtestproxy"]
	if !ok || svc.Image == "" {
		t.Fatalf("want a service pgtestproxy with an image: %+v", job.Services)
	}
	image := imageEnv(t)
	hostPort, mount := checkService(t, svc, image)
	dir, addr := sampleProject(t), freeAddr(t)
	container := containerEnv(t, image, svc.Env, mount, dir, addr)
	var ran []string
	for _, s := range job.Steps {
		switch {
		case s.Uses != "":
		case s.Name == "Restart pgtestproxy with the checked-out migrations":
			if !strings.Contains(s.Run, "docker restart ${{ job.services.pgtestproxy.id }}") {
				t.Fatalf("step %q does not restart the service", s.Name)
			}
			ran = append(ran, s.Name) // run below starts the proxy with the migrations in place
		default:
			u, err := url.Parse(s.Env["DATABASE_URL"])
			if err != nil || u.Port() != hostPort {
				t.Fatalf("step %q: DATABASE_URL %q does not go to the published port %s (%v)", s.Name, s.Env["DATABASE_URL"], hostPort, err)
			}
			if pw, _ := u.User.Password(); pw != svc.Env["PGTESTPROXY_PASSWORD"] {
				t.Fatalf("step %q: DATABASE_URL's password %q is not the service's", s.Name, pw)
			}
			_, port, _ := net.SplitHostPort(addr)
			u.Host = net.JoinHostPort(u.Hostname(), port)
			vars := []string{quote("DATABASE_URL=" + u.String())}
			for k, v := range s.Env {
				if k != "DATABASE_URL" {
					vars = append(vars, quote(k+"="+v))
				}
			}
			// The step's own environment wins over what run exports.
			step := binary + " run -- env " + strings.Join(vars, " ") + " bash -e -c " + quote(s.Run)
			wantOK(t, shell(t, dir, stepEnv(t.TempDir(), false, container), step))
			ran = append(ran, s.Name)
		}
	}
	if want := []string{"Restart pgtestproxy with the checked-out migrations", "Test"}; !slices.Equal(ran, want) {
		t.Fatalf("steps run: %q, want %q", ran, want)
	}
}

// checkService fails t unless the service fits the image: variables that name flags, a
// password or the opt-out, a tmpfs where the image keeps its data, the image's port
// published, the workspace mounted. It returns the published port and the mount point.
func checkService(t *testing.T, svc ghService, image map[string]string) (hostPort, mount string) {
	t.Helper()
	checkProxyEnv(t, "the service", svc.Env, flagNames(t))
	if svc.Env["PGTESTPROXY_PASSWORD"] == "" && svc.Env["PGTESTPROXY_ALLOW_NON_LOOPBACK"] == "" {
		t.Fatal("the service sets neither PGTESTPROXY_PASSWORD nor PGTESTPROXY_ALLOW_NON_LOOPBACK: the image refuses to start")
	}
	if want := "--tmpfs " + filepath.Dir(image["PGTESTPROXY_DATA_DIR"]); !strings.Contains(svc.Options, want) {
		t.Fatalf("service options %q: want %s, the parent of the image's data directory", svc.Options, want)
	}
	_, containerPort, _ := net.SplitHostPort(image["PGTESTPROXY_LISTEN"])
	if len(svc.Ports) != 1 || !strings.HasSuffix(svc.Ports[0], ":"+containerPort) {
		t.Fatalf("service ports %q: want HOST:%s, the image's port", svc.Ports, containerPort)
	}
	hostPort, _, _ = strings.Cut(svc.Ports[0], ":")
	if len(svc.Volumes) != 1 || !strings.HasPrefix(svc.Volumes[0], "${{ github.workspace }}:") {
		t.Fatalf("service volumes %q: want the workspace mounted", svc.Volumes)
	}
	return hostPort, strings.TrimSuffix(strings.Split(svc.Volumes[0], ":")[1], ":ro")
}

// containerEnv is the proxy's environment inside the service container, the image's
// settings overlaid by the service's, mapped to this machine: the workspace mount to
// dir, the data directory to a scratch one, the listen address to addr.
func containerEnv(t *testing.T, image, service map[string]string, mount, dir, addr string) map[string]string {
	t.Helper()
	env := maps.Clone(image)
	maps.Copy(env, service)
	migrations, ok := strings.CutPrefix(env["PGTESTPROXY_MIGRATIONS"], mount+"/")
	if !ok {
		t.Fatalf("PGTESTPROXY_MIGRATIONS %q is not inside the mounted workspace %s", env["PGTESTPROXY_MIGRATIONS"], mount)
	}
	env["PGTESTPROXY_MIGRATIONS"] = filepath.Join(dir, migrations)
	env["PGTESTPROXY_LISTEN"] = addr
	env["PGTESTPROXY_DATA_DIR"] = scratchDataDir(t)
	return env
}

// quote makes s one word for bash.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TestRecipesInREADME: the README shows every recipe file as it is.
func TestRecipesInREADME(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	files, err := os.ReadDir(recipesDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no recipes in " + recipesDir)
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(recipesDir, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(readme, append(append([]byte("\n"), b...), "```\n"...)) {
			t.Errorf("README.md does not show %s as it is", f.Name())
		}
	}
}

// TestMakeRelease builds the release archives with the module proxy switched off and
// checks what a user downloading one gets: checksums that verify, and a static binary
// that prints the version it was built as.
func TestMakeRelease(t *testing.T) {
	t.Parallel()
	const version = "v9.9.9-test"
	native := runtime.GOOS + "/" + runtime.GOARCH
	platforms := "linux/amd64 linux/arm64"
	if !strings.Contains(platforms, native) {
		platforms += " " + native
	}
	dist := filepath.Join(t.TempDir(), "dist")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	mk := exec.CommandContext(ctx, "make", "-C", "..", "release", "DIST="+dist, "VERSION="+version, "PLATFORMS="+platforms)
	mk.Env = append(os.Environ(), "GOPROXY=off")
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make release: %v\n%s", err, out)
	}
	sums := exec.CommandContext(ctx, "sha256sum", "--strict", "-c", "SHA256SUMS")
	sums.Dir = dist
	out, err := sums.CombinedOutput()
	if err != nil || strings.Count(string(out), ": OK\n") != len(strings.Fields(platforms)) {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
	name := "pgtestproxy_" + version + "_" + runtime.GOOS + "_" + runtime.GOARCH
	bin := extract(t, filepath.Join(dist, name+".tar.gz"), name+"/pgtestproxy")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the released binary is dynamically linked")
		}
	}
	v, err := exec.CommandContext(ctx, bin, "version").Output()
	if err != nil || strings.TrimSpace(string(v)) != "pgtestproxy "+version {
		t.Fatalf("released binary's version: %q, %v", v, err)
	}
}

// extract writes member of the tar.gz archive to a file of its own and returns its
// path.
func extract(t *testing.T, archive, member string) string {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s in %s: %v", member, archive, err)
		}
		if h.Name != member {
			continue
		}
		path := filepath.Join(t.TempDir(), filepath.Base(member))
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o755); err != nil {
			t.Fatal(err)
		}
		return path
	}
}
