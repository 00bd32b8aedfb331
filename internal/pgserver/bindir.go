package pgserver

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// ErrNotInstalled is returned (wrapped) when no PostgreSQL server binaries are found.
var ErrNotInstalled = errors.New("PostgreSQL server binaries not found")

// serverBinaries are the programs a usable bin directory must hold.
var serverBinaries = []string{"initdb", "pg_ctl", "postgres"}

// search describes where FindBinDir looks. It is a value so tests can point discovery at
// directories of their own.
type search struct {
	path     string   // the PATH to scan
	pgConfig string   // pg_config to ask for --bindir ("" = look it up in path)
	globs    []string // further candidates; for versioned globs the newest major wins
}

// defaultSearch is where PostgreSQL is installed by the usual packagers.
func defaultSearch() search {
	return search{
		path: os.Getenv("PATH"),
		globs: []string{
			"/usr/lib/postgresql/*/bin",          // Debian, Ubuntu
			"/usr/pgsql-*/bin",                   // PGDG RPMs
			"/usr/local/pgsql/bin",               // source install
			"/opt/homebrew/opt/postgresql@*/bin", // Homebrew, Apple silicon
			"/usr/local/opt/postgresql@*/bin",    // Homebrew, Intel
			"/opt/homebrew/opt/postgresql/bin",
			"/usr/local/opt/postgresql/bin",
			"/Applications/Postgres.app/Contents/Versions/*/bin",
		},
	}
}

// FindBinDir returns the directory holding initdb, pg_ctl and postgres. It looks on
// PATH, then asks pg_config --bindir, then tries the usual install locations (newest
// major version first). The error, when none is found, says how to install them.
func FindBinDir() (string, error) {
	return defaultSearch().find()
}

func (s search) find() (string, error) {
	var tried []string
	try := func(dir string) bool {
		if dir == "" {
			return false
		}
		tried = append(tried, dir)
		return hasServerBinaries(dir)
	}
	for _, dir := range filepath.SplitList(s.path) {
		if try(dir) {
			return dir, nil
		}
	}
	if dir := s.pgConfigBinDir(); try(dir) {
		return dir, nil
	}
	for _, g := range s.globs {
		matches, _ := filepath.Glob(g)
		sortNewestFirst(matches)
		for _, dir := range matches {
			if try(dir) {
				return dir, nil
			}
		}
	}
	return "", fmt.Errorf("%w (need %s; looked on PATH, in pg_config --bindir and in %s); %s",
		ErrNotInstalled, strings.Join(serverBinaries, ", "), strings.Join(s.globs, ", "), installHint())
}

// installHint names the command that installs the server on this platform.
func installHint() string {
	if runtime.GOOS == "darwin" {
		return "install them with `brew install postgresql@17` (or set --pg-bin-dir)"
	}
	return "install them with `sudo apt-get install postgresql` on Debian/Ubuntu or " +
		"`brew install postgresql@17` on macOS (or set --pg-bin-dir)"
}

func (s search) pgConfigBinDir() string {
	pgConfig := s.pgConfig
	if pgConfig == "" {
		for _, dir := range filepath.SplitList(s.path) {
			if p := filepath.Join(dir, "pg_config"); isExecutable(p) {
				pgConfig = p
				break
			}
		}
	}
	if pgConfig == "" {
		return ""
	}
	out, err := exec.Command(pgConfig, "--bindir").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func hasServerBinaries(dir string) bool {
	for _, b := range serverBinaries {
		if !isExecutable(filepath.Join(dir, b)) {
			return false
		}
	}
	return true
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// versionElement matches a path element that carries a version: "17", "9.6",
// "postgresql@17", "pgsql-15".
var versionElement = regexp.MustCompile(`(?:^|[@-])(\d+(?:\.\d+)?)$`)

// sortNewestFirst orders paths by the version in their last versioned element, highest
// first.
func sortNewestFirst(paths []string) {
	version := func(p string) float64 {
		for _, elem := range slices.Backward(strings.Split(p, string(filepath.Separator))) {
			if m := versionElement.FindStringSubmatch(elem); m != nil {
				v, _ := strconv.ParseFloat(m[1], 64)
				return v
			}
		}
		return 0
	}
	sort.SliceStable(paths, func(i, j int) bool { return version(paths[i]) > version(paths[j]) })
}

// MajorVersion runs `postgres --version` in binDir and returns the major version (15 for
// "postgres (PostgreSQL) 15.18").
func MajorVersion(binDir string) (int, error) {
	out, err := exec.Command(filepath.Join(binDir, "postgres"), "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("run %s --version: %w", filepath.Join(binDir, "postgres"), err)
	}
	m := regexp.MustCompile(`\(PostgreSQL\) (\d+)`).FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("parse postgres version from %q", strings.TrimSpace(string(out)))
	}
	return strconv.Atoi(string(m[1]))
}
