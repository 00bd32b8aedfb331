package pgserver

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// fakeInstall makes dir look like a PostgreSQL bin directory.
func fakeInstall(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range serverBinaries {
		if err := os.WriteFile(filepath.Join(dir, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFindBinDir(t *testing.T) {
	root := t.TempDir()
	onPath := filepath.Join(root, "path", "bin")
	fakeInstall(t, onPath)
	for _, v := range []string{"9.6", "13", "17"} {
		fakeInstall(t, filepath.Join(root, "lib", v, "bin"))
	}
	partial := filepath.Join(root, "partial")
	if err := os.MkdirAll(partial, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(partial, "initdb"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	pgConfigDir := filepath.Join(root, "cfg")
	fakeInstall(t, filepath.Join(root, "from-pg-config"))
	if err := os.MkdirAll(pgConfigDir, 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\necho " + filepath.Join(root, "from-pg-config") + "\n"
	if err := os.WriteFile(filepath.Join(pgConfigDir, "pg_config"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	glob := filepath.Join(root, "lib", "*", "bin")

	tests := []struct {
		name string
		s    search
		want string
	}{
		{"PATH first", search{path: partial + ":" + onPath, globs: []string{glob}}, onPath},
		{"pg_config --bindir", search{path: partial + ":" + pgConfigDir, globs: []string{glob}}, filepath.Join(root, "from-pg-config")},
		{"newest major from glob", search{path: partial, globs: []string{glob}}, filepath.Join(root, "lib", "17", "bin")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.s.find()
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("find() = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestFindBinDirNotInstalled(t *testing.T) {
	empty := t.TempDir()
	_, err := search{path: empty, globs: []string{filepath.Join(empty, "nothing", "*")}}.find()
	if !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("err = %v, want ErrNotInstalled", err)
	}
	want := []string{"initdb", "brew install postgresql"}
	if runtime.GOOS == "linux" {
		want = append(want, "apt-get install postgresql")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

func TestStartNotInstalledBinDir(t *testing.T) {
	_, err := Start(t.Context(), Config{BinDir: t.TempDir(), DataDir: filepath.Join(t.TempDir(), "d")})
	if !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("err = %v, want ErrNotInstalled", err)
	}
}

func TestSortNewestFirst(t *testing.T) {
	got := []string{"/usr/lib/postgresql/9.6/bin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/10/bin"}
	sortNewestFirst(got)
	want := []string{"/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/10/bin", "/usr/lib/postgresql/9.6/bin"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestDefaultDataDirPrefersTmpfs(t *testing.T) {
	dir, why := DefaultDataDir(15)
	if _, ok := tmpfsFree("/dev/shm"); ok && !strings.HasPrefix(dir, "/dev/shm/") {
		t.Fatalf("DefaultDataDir = %s (%s), want it on the /dev/shm tmpfs", dir, why)
	}
	if !strings.HasSuffix(dir, "/pg15") || why == "" {
		t.Fatalf("DefaultDataDir = %s (%s)", dir, why)
	}
	old := tmpfsRoot
	tmpfsRoot = t.TempDir() // not a tmpfs unless TMPDIR is one
	defer func() { tmpfsRoot = old }()
	if _, ok := tmpfsFree(tmpfsRoot); ok {
		t.Skip("TMPDIR is a tmpfs")
	}
	if dir, _ := DefaultDataDir(15); strings.HasPrefix(dir, tmpfsRoot) {
		t.Fatalf("DefaultDataDir = %s on a non-tmpfs root", dir)
	}
}
