package pgserver

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
)

// tmpfsRoot is where DefaultDataDir prefers to put data; a variable for tests.
var tmpfsRoot = "/dev/shm"

// minTmpfsFree is the free space a tmpfs must have to be chosen (templates and a pool
// of clones of a small schema take tens of MiB each; leave generous room).
const minTmpfsFree = 2 << 30

// DefaultDataDir returns where the embedded server of the given major version keeps its
// data, and why there. A tmpfs with room is preferred (measured here: clone time stays
// flat at ~11 ms under CREATE/DROP DATABASE churn on tmpfs, while it grows from ~14 ms to
// 80+ ms on ext4); otherwise the user cache directory.
func DefaultDataDir(major int) (dir, reason string) {
	leaf := fmt.Sprintf("pg%d", major)
	if free, ok := tmpfsFree(tmpfsRoot); ok && free >= minTmpfsFree {
		return filepath.Join(tmpfsRoot, "pgtestproxy-"+userName(), leaf),
			fmt.Sprintf("%s is a tmpfs with %d MiB free: clones stay fast under churn", tmpfsRoot, free>>20)
	}
	if os.Geteuid() == 0 {
		// root's cache directory is not reachable by the unprivileged server user.
		return filepath.Join("/var/tmp", "pgtestproxy-root", leaf),
			"no tmpfs with room; running as root, so a directory the server user can reach"
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	return filepath.Join(cache, "pgtestproxy", leaf), "no tmpfs with room; using the user cache directory"
}

func userName() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return fmt.Sprintf("uid%d", os.Geteuid())
}
