package migrations

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
	"github.com/pgtestproxy/pgtestproxy/internal/progress"
)

// outputLines is how many of a failing command's last output lines its error carries.
const outputLines = 20

// Command builds a template by running a shell command that migrates the database
// itself (rails db:schema:load, alembic upgrade head, npx prisma migrate deploy, …).
// Its hash covers the command and the names and contents of the watched files, so
// only an edit there builds a new template. Its methods are safe for concurrent use.
type Command struct {
	cmd     string
	watch   []string
	workDir string
	timeout time.Duration

	cache *guarded[[32]byte] // the digest while nothing changed in the watched paths

	mu      sync.Mutex
	listKey string   // (path, size, mtime) of the watched files digest was made from
	digest  [32]byte // of their names and contents
	files   int
}

// CommandConfig configures a Command.
type CommandConfig struct {
	// Command is run with sh -c. Required.
	Command string
	// Watch lists the files, directories (walked recursively, leaving out hidden
	// directories, __pycache__ and node_modules) and globs whose names and contents key
	// the template. Relative ones are taken from WorkDir. Each must
	// match something.
	Watch []string
	// WorkDir is the command's working directory. Default: the process's.
	WorkDir string
	// Timeout bounds one run; the command's process group is killed when it passes.
	// Default: only the caller's deadline.
	Timeout time.Duration
}

// NewCommand returns the Command cfg describes.
func NewCommand(cfg CommandConfig) (*Command, error) {
	if strings.TrimSpace(cfg.Command) == "" {
		return nil, errors.New("migrate command: empty")
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("migrate command: timeout %v is negative", cfg.Timeout)
	}
	c := &Command{cmd: cfg.Command, watch: slices.Clone(cfg.Watch), workDir: cfg.WorkDir, timeout: cfg.Timeout,
		cache: &guarded[[32]byte]{}}
	runtime.AddCleanup(c, func(w *guarded[[32]byte]) { w.stop() }, c.cache)
	return c, nil
}

// Describe says what runs and what keys it.
func (c *Command) Describe() string {
	c.mu.Lock()
	n := c.files
	c.mu.Unlock()
	if len(c.watch) == 0 {
		return fmt.Sprintf("command %q", c.cmd)
	}
	return fmt.Sprintf("command %q watching %s (%d files)", c.cmd, strings.Join(c.watch, ", "), n)
}

// Hash returns the hex SHA-256 of the command, the watched files' names and contents,
// the server's major version and the catalog version. The files are read again only
// when one's path, size or mtime changed.
func (c *Command) Hash(ctx context.Context, serverMajor, catalogVersion int) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	digest, err := c.currentDigest()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write([]byte("pgtestproxy command v1\x00"))
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(c.cmd))))
	h.Write([]byte(c.cmd))
	h.Write(digest[:])
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(serverMajor)))
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(catalogVersion)))
	return hex.EncodeToString(h.Sum(nil)), nil
}

// currentDigest returns the digest of the watched files. As a Dir's Hash does, it walks
// them again only after a change in their directories (guarded), unless they cannot be
// watched: a pattern with a wildcard in its directory part, a symbolic link, a
// filesystem without local events, a system other than Linux.
func (c *Command) currentDigest() ([32]byte, error) {
	return c.cache.get(c.roots(), c.listed)
}

// roots returns the directory of every watched pattern, or nil when one has a
// wildcard.
func (c *Command) roots() []string {
	var dirs []string
	for _, pattern := range c.watch {
		dir := filepath.Dir(c.full(pattern))
		if strings.ContainsAny(dir, `*?[\`) {
			return nil
		}
		dirs = append(dirs, dir)
	}
	return dirs
}

// listed walks the watched paths and digests the files (reading them only when the
// listing changed).
func (c *Command) listed() (listed[[32]byte], error) {
	paths, dirs, key, err := c.watched()
	if err != nil {
		return listed[[32]byte]{}, err
	}
	c.mu.Lock()
	fresh, digest := c.listKey == key, c.digest
	c.mu.Unlock()
	if !fresh {
		if digest, err = c.read(paths); err != nil {
			return listed[[32]byte]{}, err
		}
		c.mu.Lock()
		c.listKey, c.digest, c.files = key, digest, len(paths)
		c.mu.Unlock()
	}
	return listed[[32]byte]{val: digest, dirs: dirs, names: append(paths, dirs...)}, nil
}

// full is pattern taken from the work directory.
func (c *Command) full(pattern string) string {
	if !filepath.IsAbs(pattern) && c.workDir != "" {
		return filepath.Join(c.workDir, pattern)
	}
	return pattern
}

// watched returns the watched files, sorted, the directories walked to find them, and
// the files' (path, size, mtime) key.
func (c *Command) watched() ([]string, []string, string, error) {
	seen := map[string]bool{}
	var paths, dirs []string
	var key strings.Builder
	for _, pattern := range c.watch {
		matches, err := filepath.Glob(c.full(pattern))
		if err != nil {
			return nil, nil, "", fmt.Errorf("migrate command: watch %s: %w", pattern, err)
		}
		if len(matches) == 0 {
			return nil, nil, "", fmt.Errorf("migrate command: watch %s: no such file", pattern)
		}
		for _, m := range matches {
			err := filepath.WalkDir(m, func(p string, e fs.DirEntry, err error) error {
				if err == nil && e.IsDir() && p != m && skippedDir(e.Name()) {
					return filepath.SkipDir
				}
				if err == nil && e.IsDir() {
					dirs = append(dirs, p)
				}
				if err != nil || e.IsDir() || seen[p] {
					return err
				}
				seen[p] = true
				paths = append(paths, p)
				return nil
			})
			if err != nil {
				return nil, nil, "", fmt.Errorf("migrate command: watch %s: %w", pattern, err)
			}
		}
	}
	slices.Sort(paths)
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, nil, "", fmt.Errorf("migrate command: watch: %w", err)
		}
		fmt.Fprintf(&key, "%s\x00%d\x00%d\n", p, fi.Size(), fi.ModTime().UnixNano())
	}
	return paths, dirs, key.String(), nil
}

// skippedDir reports a directory a watched directory's walk leaves out: hidden ones
// and caches a build writes into (__pycache__, node_modules).
func skippedDir(name string) bool {
	return strings.HasPrefix(name, ".") || name == "__pycache__" || name == "node_modules"
}

func (c *Command) read(paths []string) ([32]byte, error) {
	h := sha256.New()
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return [32]byte{}, fmt.Errorf("migrate command: watch: %w", err)
		}
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(p))))
		h.Write([]byte(p))
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(data))))
		h.Write(data)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// Migrate runs the command against the database at connString: DATABASE_URL and
// PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD point at it (inherited PG* variables
// are dropped). A non-zero exit fails with the output's last lines, under the SQLSTATE
// the output reports last (psql's "ERROR:  42P01:" with VERBOSITY verbose, or
// "SQLSTATE 42P01"), else XX000. When ctx or the timeout ends first, the command's
// process group is killed.
func (c *Command) Migrate(ctx context.Context, connString, _ string) error {
	env, err := commandEnv(connString)
	if err != nil {
		return fmt.Errorf("migrate command: %w", err)
	}
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	progress.Report(ctx, progress.Step{N: 1, Total: 1, Name: c.cmd})
	cmd := exec.CommandContext(ctx, "sh", "-c", c.cmd)
	cmd.Dir = c.workDir
	cmd.Env = env
	out := &tail{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = cancelGrace
	err = cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // what it left behind holds the database
	}
	if err == nil {
		return nil
	}
	last := out.lastLines(outputLines)
	if ctx.Err() != nil {
		return pgerr.Wrap(pgerrcode.QueryCanceled, fmt.Sprintf("migrate command %q stopped: %v; its last output:\n%s", c.cmd, ctx.Err(), last), ctx.Err())
	}
	return pgerr.Wrap(outputSQLState(out.String()), fmt.Sprintf("migrate command %q failed (%v); its last output:\n%s", c.cmd, err, last), err)
}

var sqlstateRE = regexp.MustCompile(`SQLSTATE[ :=]*([0-9A-Z]{5})\b|ERROR:\s+([0-9A-Z]{5}):`)

// outputSQLState returns the last SQLSTATE the output reports, or XX000.
func outputSQLState(out string) string {
	m := sqlstateRE.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return pgerrcode.InternalError
	}
	last := m[len(m)-1]
	return last[1] + last[2]
}

// commandEnv is the process's environment without PG* and DATABASE_URL, plus those
// pointing at connString's database.
func commandEnv(connString string) ([]string, error) {
	cfg, err := pgconn.ParseConfig(connString)
	if err != nil {
		return nil, err
	}
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if name == "DATABASE_URL" || strings.HasPrefix(name, "PG") && !strings.HasPrefix(name, "PGTESTPROXY_") {
			continue
		}
		env = append(env, kv)
	}
	port := strconv.Itoa(int(cfg.Port))
	u := url.URL{Scheme: "postgres", Path: "/" + cfg.Database}
	q := url.Values{}
	if strings.HasPrefix(cfg.Host, "/") {
		q.Set("host", cfg.Host)
		q.Set("port", port)
	} else {
		u.Host = net.JoinHostPort(cfg.Host, port)
	}
	if cfg.Password != "" {
		u.User = url.UserPassword(cfg.User, cfg.Password)
	} else {
		u.User = url.User(cfg.User)
	}
	if cfg.TLSConfig == nil {
		q.Set("sslmode", "disable")
		env = append(env, "PGSSLMODE=disable")
	}
	u.RawQuery = q.Encode()
	return append(env, "DATABASE_URL="+u.String(), "PGHOST="+cfg.Host, "PGPORT="+port, "PGUSER="+cfg.User,
		"PGDATABASE="+cfg.Database, "PGPASSWORD="+cfg.Password), nil
}

// tail keeps the last tailBytes of what is written to it.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

const tailBytes = 64 << 10

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailBytes {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-tailBytes:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

func (t *tail) lastLines(n int) string {
	lines := strings.Split(strings.TrimRight(t.String(), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
