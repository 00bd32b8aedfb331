package pgserver

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// runAs is the OS account the server programs run as; nil means the current user.
type runAs struct {
	name     string
	uid, gid uint32
}

// serverUser picks the account to run PostgreSQL as. PostgreSQL refuses to run as root,
// so root hands the work to "postgres" when it exists, else "nobody".
func serverUser() (*runAs, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		return &runAs{name: name, uid: uint32(uid), gid: uint32(gid)}, nil
	}
	return nil, fmt.Errorf("running as root and neither user postgres nor nobody exists to run the server as")
}

// command builds an exec.Cmd that runs as the server user.
func (r *runAs) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if r != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: r.uid, Gid: r.gid}
		cmd.Dir = "/"
	}
	return cmd
}

// mkdirOwned creates dir (and missing parents below top, which must already exist or be
// creatable) with mode 0700 and hands every directory from top down to the server user.
func (r *runAs) mkdirOwned(top, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if r == nil {
		return nil
	}
	for d := dir; ; d = filepath.Dir(d) {
		if err := os.Chown(d, int(r.uid), int(r.gid)); err != nil {
			return fmt.Errorf("hand %s to user %s: %w", d, r.name, err)
		}
		if d == top || d == filepath.Dir(d) {
			return nil
		}
	}
}
