package pgtest_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// envUnderRun marks the test binary re-run under `pgtestproxy run` by TestMain.
const envUnderRun = "PGTEST_TEST_UNDER_RUN"

// TestMain runs these tests the way the package's users run theirs:
//
//	pgtestproxy run --migrations testdata/migrations -- <this test binary> <its flags>
//
// It builds pgtestproxy (or takes PGTESTPROXY_TEST_BINARY), runs it with the embedded
// PostgreSQL in a scratch data directory (or PGTESTPROXY_TEST_DATABASE as the upstream),
// and re-runs this binary under it, so PGTESTPROXY_URL comes from `run`.
func TestMain(m *testing.M) {
	if os.Getenv(envUnderRun) != "" {
		os.Exit(m.Run())
	}
	os.Exit(underRun())
}

func underRun() int {
	tmp, err := os.MkdirTemp(scratchBase(), "pgtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	binary := os.Getenv("PGTESTPROXY_TEST_BINARY")
	if binary == "" {
		binary = filepath.Join(tmp, "pgtestproxy")
		build := exec.Command("go", "build", "-o", binary, "../cmd/pgtestproxy")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build pgtestproxy:", err)
			return 1
		}
	}
	args := []string{"run", "--migrations=testdata/migrations", "--pool-size=2", "--log-level=warn"}
	if up := os.Getenv("PGTESTPROXY_TEST_DATABASE"); up != "" {
		args = append(args, "--upstream="+up)
	} else {
		args = append(args, "--data-dir="+filepath.Join(tmp, "pg"))
	}
	args = append(append(args, "--", os.Args[0]), os.Args[1:]...)
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), envUnderRun+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.ExitCode()
	}
	fmt.Fprintln(os.Stderr, "pgtestproxy run:", err)
	return 1
}

// scratchBase is where the embedded server's scratch data goes: tmpfs when there is one.
func scratchBase() string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return "/dev/shm"
	}
	return os.TempDir()
}
