package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/golang-migrate/migrate/v4"
	pgxmigrate "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	_ "github.com/golang-migrate/migrate/v4/source/file" // file:// sources
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/pgtestproxy/pgtestproxy/internal/pgserver"
)

// env is everything one bench run starts: the server, the migration sets, the proxy
// binary and the running proxy, and pgbouncer when installed.
type env struct {
	root     string // temp dir: migrations, binary, pgbouncer files
	server   *pgserver.Server
	proxyBin string
	proxy    *proxyProc
	bouncer  string // pgbouncer's address, "" when not installed
	sets     map[string]string
	salt     string
	cleanup  []func()
}

// startEnv starts the server on a fresh data directory on tmpfs, writes the migration
// sets and builds the proxy binary.
func startEnv(ctx context.Context, log io.Writer) (*env, error) {
	e := &env{salt: strconv.FormatInt(time.Now().UnixNano(), 36), sets: map[string]string{}}
	root, err := os.MkdirTemp("", "pgtp-bench")
	if err != nil {
		return nil, err
	}
	e.root = root
	_ = os.Chmod(root, 0o755) // pgbouncer runs as nobody when we are root and writes its log here
	e.cleanup = append(e.cleanup, func() { _ = os.RemoveAll(root) })
	dataDir := filepath.Join(shmOrTemp(), fmt.Sprintf("pgtp-bench-%d", os.Getpid()))
	e.cleanup = append(e.cleanup, func() { _ = os.RemoveAll(dataDir) })
	fmt.Fprintln(log, "starting PostgreSQL in", dataDir)
	srv, err := pgserver.Start(ctx, pgserver.Config{DataDir: filepath.Join(dataDir, "pg"), MaxConnections: 1300})
	if err != nil {
		e.close()
		return nil, err
	}
	e.server = srv
	e.cleanup = append(e.cleanup, func() { _ = srv.Close() })
	for _, set := range []string{setSmall, setLarge, setPgbench} {
		dir := filepath.Join(root, "migrations", set)
		if err := writeSet(dir, set, e.salt); err != nil {
			e.close()
			return nil, err
		}
		e.sets[set] = dir
	}
	fmt.Fprintln(log, "building the proxy binary")
	e.proxyBin = filepath.Join(root, "pgtestproxy")
	build := exec.CommandContext(ctx, "go", "build", "-o", e.proxyBin, "./cmd/pgtestproxy")
	if build.Dir, err = productRoot(); err != nil {
		e.close()
		return nil, err
	}
	build.Stderr = log
	if err := build.Run(); err != nil {
		e.close()
		return nil, fmt.Errorf("go build ./cmd/pgtestproxy: %w", err)
	}
	return e, nil
}

// productRoot is the pgtestproxy checkout the bench runs in: the working directory or
// the nearest parent with cmd/pgtestproxy (the bench module lives in its bench/).
func productRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "cmd", "pgtestproxy", "main.go")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run the bench inside a pgtestproxy checkout (make bench): no cmd/pgtestproxy above the working directory")
		}
		dir = parent
	}
}

func shmOrTemp() string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		return "/dev/shm"
	}
	return os.TempDir()
}

func (e *env) close() {
	if e.proxy != nil {
		e.proxy.stop()
	}
	for i := len(e.cleanup) - 1; i >= 0; i-- {
		e.cleanup[i]()
	}
}

// url is a URL to database db on the server, or through addr when addr is given.
func (e *env) url(addr, db string, params ...string) string {
	if addr == "" {
		addr = fmt.Sprintf("127.0.0.1:%d", e.server.Port())
	}
	q := url.Values{"sslmode": {"disable"}}
	for i := 0; i+1 < len(params); i += 2 {
		q.Set(params[i], params[i+1])
	}
	return fmt.Sprintf("postgres://%s@%s/%s?%s", pgserver.Superuser, addr, db, q.Encode())
}

// exec runs sql on the server's postgres database.
func (e *env) exec(ctx context.Context, sql string) error {
	c, err := pgx.Connect(ctx, e.url("", "postgres"))
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	_, err = c.Exec(ctx, sql)
	return err
}

// migrateInto creates database db and applies migrations dir with golang-migrate.
func (e *env) migrateInto(ctx context.Context, db, dir string) error {
	if err := e.exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
		return fmt.Errorf("create %s: %w", db, err)
	}
	return runMigrate(ctx, e.url("", db), dir)
}

// runMigrate applies dir to the database at dsn with golang-migrate's Up.
func runMigrate(ctx context.Context, dsn, dir string) error {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return err
	}
	sqlDB := stdlib.OpenDB(*cfg)
	defer sqlDB.Close()
	drv, err := pgxmigrate.WithInstance(sqlDB, &pgxmigrate.Config{})
	if err != nil {
		return fmt.Errorf("golang-migrate on %s: %w", cfg.Database, err)
	}
	m, err := migrate.NewWithDatabaseInstance("file://"+dir, "pgx5", drv)
	if err != nil {
		return err
	}
	defer m.Close()
	if err := m.Up(); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return fmt.Errorf("migrate %s: %w", dir, err)
	}
	return ctx.Err()
}

// saltedSet writes a fresh copy of set with a new salt: a template nobody has built.
func (e *env) saltedSet(set, tag string) (string, error) {
	dir := filepath.Join(e.root, "cold", set+"-"+tag)
	return dir, writeSet(dir, set, e.salt+"-"+tag)
}

// proxyProc is a running `pgtestproxy serve`.
type proxyProc struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
}

// startProxy runs the built binary on the server with the given migration sets, and
// returns once it accepts clients: its JSON log's "proxy listening" line names the
// address it bound.
func (e *env) startProxy(ctx context.Context, sets map[string]string, extra ...string) (*proxyProc, error) {
	args := []string{"serve", "--upstream", e.url("", "postgres"), "--listen", "127.0.0.1:0",
		"--log-format", "json", "--log-level", "info", "--max-clones", "1200", "--max-sessions", "2000",
		"--acquire-timeout", "10m"} // the footprint opens hundreds of sessions faster than clones are made
	for name, dir := range sets {
		args = append(args, "--migrations", name+"="+dir)
	}
	args = append(args, extra...)
	cmd := exec.Command(e.proxyBin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(e.root, fmt.Sprintf("proxy-%d.log", time.Now().UnixNano())))
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proxyProc{cmd: cmd, done: make(chan struct{})}
	ready := make(chan string, 1)
	go func() {
		defer close(p.done)
		defer logFile.Close()
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			_, _ = logFile.Write(append(sc.Bytes(), '\n'))
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "proxy listening" {
				select {
				case ready <- line.Addr:
				default:
				}
			}
		}
		_ = cmd.Wait()
	}()
	select {
	case p.addr = <-ready:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("pgtestproxy serve exited before listening (log in %s)", logFile.Name())
	case <-ctx.Done():
		p.stop()
		return nil, ctx.Err()
	}
}

// stop sends SIGTERM and waits for the process to exit.
func (p *proxyProc) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// startPgbouncer runs pgbouncer in session mode in front of the server; it returns ""
// when pgbouncer is not installed.
func (e *env) startPgbouncer(ctx context.Context) (string, error) {
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		return "", nil
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(e.root, "pgbouncer")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return "", err
	}
	_ = os.Chmod(dir, 0o777)
	ini := fmt.Sprintf(`[databases]
* = host=127.0.0.1 port=%d user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = any
pool_mode = session
max_client_conn = 2000
default_pool_size = 64
logfile = %s
pidfile = %s
`, e.server.Port(), port, filepath.Join(dir, "pgbouncer.log"), filepath.Join(dir, "pgbouncer.pid"))
	cfg := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(cfg, []byte(ini), 0o644); err != nil {
		return "", err
	}
	args := []string{cfg}
	if os.Geteuid() == 0 {
		args = append([]string{"-u", "nobody"}, args...) // pgbouncer refuses to run as root
	}
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		return "", err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	e.cleanup = append(e.cleanup, func() { _ = cmd.Process.Kill(); <-exited })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	// pgbouncer has no readiness signal of its own: its listening socket is the signal.
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			return addr, nil
		}
		select {
		case <-exited:
			return "", fmt.Errorf("pgbouncer exited (log in %s)", dir)
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return "", fmt.Errorf("pgbouncer did not listen on %s", addr)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// console runs a SHOW command on the proxy's admin console and returns its rows as
// maps from column name to text.
func console(ctx context.Context, addr, what string) ([]map[string]string, error) {
	cfg, err := pgx.ParseConfig(fmt.Sprintf("postgres://bench@%s/pgtestproxy?sslmode=disable", addr))
	if err != nil {
		return nil, err
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close(context.WithoutCancel(ctx))
	rows, err := c.Query(ctx, "SHOW "+what)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []map[string]string
	for rows.Next() {
		m := map[string]string{}
		for i, fd := range rows.FieldDescriptions() {
			m[fd.Name] = string(rows.RawValues()[i])
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// rssMB reads a process's resident set size from /proc.
func rssMB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
