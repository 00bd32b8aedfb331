package testpg

import (
	"os"
	osexec "os/exec"
	"testing"
)

// InCI reports whether the tests run in CI (CI set, as CI services and .ci/run's
// callers do), where every tool the tests use is installed and a missing one is a
// failure, not a reason to skip.
func InCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false" && v != "0"
}

// Missing ends t because what it needs is missing (what says what, install how to get
// it): a skip on a developer's machine, a failure in CI.
func Missing(t testing.TB, what, install string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s (CI is set, so this fails instead of skipping); .ci/run installs it: %s", what, install)
	}
	t.Skipf("%s; install it with: %s", what, install)
}

// Tool returns the path of the program name, or ends t as Missing does.
func Tool(t testing.TB, name, install string) string {
	t.Helper()
	path, err := osexec.LookPath(name)
	if err != nil {
		Missing(t, name+" not found on PATH", install)
	}
	return path
}

// Psql returns the path of psql, or ends t as Missing does.
func Psql(t testing.TB) string {
	t.Helper()
	return Tool(t, "psql", "apt-get install postgresql-client")
}
