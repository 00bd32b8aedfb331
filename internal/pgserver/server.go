package pgserver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Superuser is the role initdb creates; the server trusts it on 127.0.0.1.
const Superuser = "postgres"

// Config describes the server to start. The zero value finds the binaries, picks the
// default data directory and uses test settings.
type Config struct {
	// BinDir holds initdb, pg_ctl and postgres. Empty means FindBinDir.
	BinDir string
	// DataDir is the data directory, created and initialised when missing and reused
	// when present. Empty means DefaultDataDir for the binaries' major version.
	DataDir string
	// MaxConnections is the server's max_connections. Zero means 300.
	MaxConnections int
	// Port is the TCP port to start the server on. Zero picks a free one. A fixed port
	// lets a test restart the server where its clients will reconnect.
	Port int
	// Settings are further postgresql.conf settings (name → value as written in the
	// file, e.g. "max_prepared_transactions": "2"), written when the data directory is
	// initialised.
	Settings map[string]string
	// StartTimeout bounds initdb plus start-up. Zero means 2 minutes.
	StartTimeout time.Duration
	// Logger receives what the launcher does. Nil means zap.NewNop().
	Logger *zap.Logger
	// OnStart, when set, runs after this launcher started the server (not when it
	// attached), before any other launcher can attach: the place for clean-up that
	// must not race with other users. An error fails Start and stops the server.
	OnStart func(ctx context.Context, admin string) error
}

// Server is a running PostgreSQL server this process started or attached to.
type Server struct {
	binDir  string
	dataDir string
	major   int
	port    int
	want    int  // Config.Port
	started bool // this launcher started the server rather than attaching
	user    *runAs
	log     *zap.Logger
	users   *fileLock // shared while this launcher uses the server

	closeOnce sync.Once
	closeErr  error
	closeCh   chan struct{}
	watchDone chan struct{}
}

// Start starts the server described by cfg, or attaches to it when another launcher
// already runs it on the same data directory. ctx bounds start-up and the launcher's
// use of the server: when ctx is cancelled the launcher closes as if Close was called.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	timeout := cfg.StartTimeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	startCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	s := &Server{binDir: cfg.BinDir, dataDir: cfg.DataDir, log: log, want: cfg.Port,
		closeCh: make(chan struct{}), watchDone: make(chan struct{})}
	if err := s.resolve(cfg); err != nil {
		return nil, err
	}
	startLock, err := lockFile(startCtx, s.dataDir+".lock", unix.LOCK_EX)
	if err != nil {
		return nil, err
	}
	defer startLock.unlock()
	if err := s.initialize(startCtx, cfg); err != nil {
		return nil, err
	}
	if err := s.attachOrStart(startCtx); err != nil {
		return nil, err
	}
	if s.started && cfg.OnStart != nil {
		if err := cfg.OnStart(startCtx, s.ConnString("postgres")); err != nil {
			_ = s.stop(context.WithoutCancel(startCtx))
			return nil, fmt.Errorf("start postgres on %s: %w", s.dataDir, err)
		}
	}
	if s.users, err = lockFile(startCtx, s.dataDir+".users", unix.LOCK_SH); err != nil {
		return nil, err
	}
	go s.watch(ctx)
	return s, nil
}

// resolve fills in the binaries, version, data directory and server user.
func (s *Server) resolve(cfg Config) error {
	var err error
	if s.binDir == "" {
		if s.binDir, err = FindBinDir(); err != nil {
			return err
		}
	} else if !hasServerBinaries(s.binDir) {
		return fmt.Errorf("%w in %s (need %s); %s", ErrNotInstalled, s.binDir,
			strings.Join(serverBinaries, ", "), installHint())
	}
	if s.major, err = MajorVersion(s.binDir); err != nil {
		return err
	}
	reason := "set by configuration"
	if s.dataDir == "" {
		s.dataDir, reason = DefaultDataDir(s.major)
	}
	if s.dataDir, err = filepath.Abs(s.dataDir); err != nil {
		return fmt.Errorf("data directory %s: %w", cfg.DataDir, err)
	}
	if s.user, err = serverUser(); err != nil {
		return err
	}
	if err := s.user.mkdirOwned(filepath.Dir(s.dataDir), filepath.Dir(s.dataDir)); err != nil {
		return err
	}
	fields := []zap.Field{zap.String("data_dir", s.dataDir), zap.String("why", reason),
		zap.String("bin_dir", s.binDir), zap.Int("major", s.major)}
	if s.user != nil {
		fields = append(fields, zap.String("run_as", s.user.name))
	}
	s.log.Info("embedded postgres", fields...)
	return nil
}

// initialize runs initdb once. It works in a scratch directory renamed into place at
// the end, so a crash mid-initdb never leaves a half-initialised data directory behind.
func (s *Server) initialize(ctx context.Context, cfg Config) error {
	if _, err := os.Stat(filepath.Join(s.dataDir, "PG_VERSION")); err == nil {
		return nil
	}
	began := time.Now()
	tmp := s.dataDir + ".initdb"
	for _, dir := range []string{tmp, s.dataDir} {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("remove half-initialised %s: %w", dir, err)
		}
	}
	if err := s.user.mkdirOwned(tmp, tmp); err != nil {
		return err
	}
	cmd := s.user.command(filepath.Join(s.binDir, "initdb"), "-D", tmp, "-U", Superuser,
		"-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	if out, err := runCtx(ctx, cmd); err != nil {
		return fmt.Errorf("initdb %s: %w: %s", s.dataDir, err, lastLines(out, 5))
	}
	if err := s.writeSettings(tmp, cfg); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.dataDir); err != nil {
		return fmt.Errorf("move initialised data into %s: %w", s.dataDir, err)
	}
	s.log.Info("initialised data directory", zap.String("data_dir", s.dataDir),
		zap.Duration("took", time.Since(began)))
	return nil
}

// writeSettings appends the test settings to postgresql.conf.
func (s *Server) writeSettings(dir string, cfg Config) error {
	maxConns := cfg.MaxConnections
	if maxConns == 0 {
		maxConns = 300
	}
	settings := fmt.Sprintf(`
# pgtestproxy: settings for a disposable test server
listen_addresses = '127.0.0.1'
max_connections = %d
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = minimal
max_wal_senders = 0
logging_collector = off
`, maxConns)
	for _, name := range slices.Sorted(maps.Keys(cfg.Settings)) {
		settings += name + " = " + cfg.Settings[name] + "\n"
	}
	conf := filepath.Join(dir, "postgresql.conf")
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", conf, err)
	}
	_, err = f.WriteString(settings)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", conf, err)
	}
	return nil
}

// attachOrStart attaches to a server already running on the data directory, or starts
// one (clearing a stale postmaster.pid first).
func (s *Server) attachOrStart(ctx context.Context) error {
	pf, err := readPidFile(s.dataDir)
	switch {
	case err == nil && pf.alive():
		s.port = pf.port
		if err := s.waitReady(ctx); err != nil {
			return fmt.Errorf("attach to postgres (pid %d) on %s: %w", pf.pid, s.dataDir, err)
		}
		s.log.Info("attached to running postgres", zap.Int("pid", pf.pid), zap.Int("port", s.port))
		return nil
	case err == nil:
		s.log.Warn("removing stale postmaster.pid", zap.Int("pid", pf.pid), zap.String("data_dir", s.dataDir))
		if err := os.Remove(filepath.Join(s.dataDir, "postmaster.pid")); err != nil {
			return fmt.Errorf("remove stale postmaster.pid in %s: %w", s.dataDir, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	return s.start(ctx)
}

// start runs pg_ctl start on a free port, retrying when the port was taken in between
// or a killed server's children still hold its shared memory.
func (s *Server) start(ctx context.Context) error {
	began := time.Now()
	logFile := filepath.Join(s.dataDir, "server.log")
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := s.want, error(nil)
		if port == 0 {
			port, err = freePort()
		}
		if err != nil {
			return err
		}
		cmd := s.user.command(filepath.Join(s.binDir, "pg_ctl"), "start", "-w", "-t", "60",
			"-D", s.dataDir, "-l", logFile,
			"-o", fmt.Sprintf("-p %d -k '%s'", port, s.dataDir))
		out, err := runCtx(ctx, cmd)
		if err == nil {
			s.port, s.started = port, true
			s.log.Info("started postgres", zap.Int("port", port), zap.String("log", logFile),
				zap.Duration("took", time.Since(began)))
			return s.waitReady(ctx)
		}
		lastErr = fmt.Errorf("pg_ctl start on %s: %w: %s; server log: %s", s.dataDir, err,
			lastLines(out, 3), lastLines(readTail(logFile), 5))
		if ctx.Err() != nil {
			return lastErr
		}
		time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
	return lastErr
}

// waitReady connects until the server answers.
func (s *Server) waitReady(ctx context.Context) error {
	for {
		c, err := pgconn.Connect(ctx, s.ConnString("postgres"))
		if err == nil {
			return c.Close(ctx)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("postgres on port %d not ready: %w", s.port, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// watch closes the launcher when its context ends.
func (s *Server) watch(ctx context.Context) {
	defer close(s.watchDone)
	select {
	case <-ctx.Done():
		s.Close()
	case <-s.closeCh:
	}
}

// Close releases this launcher's hold on the server and stops the server when no other
// launcher holds it: fast shutdown first, immediate when that does not finish. It is
// idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.closeCh)
		s.closeErr = s.release()
	})
	return s.closeErr
}

func (s *Server) release() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	startLock, err := lockFile(ctx, s.dataDir+".lock", unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer startLock.unlock()
	s.users.unlock()
	last, ok, err := tryLockFile(s.dataDir+".users", unix.LOCK_EX)
	if err != nil || !ok {
		return err // another launcher still uses the server
	}
	defer last.unlock()
	return s.stop(ctx)
}

// stop shuts the server down: fast, then immediate. It returns once the postmaster
// process is gone, not only its pid file: pg_ctl reports success when the file is
// removed, which the postmaster does just before it exits.
func (s *Server) stop(ctx context.Context) error {
	pf, err := readPidFile(s.dataDir)
	if err != nil || !pf.alive() {
		return nil
	}
	defer awaitExit(ctx, pf)
	var errs []error
	for _, mode := range []string{"fast", "immediate"} {
		cmd := s.user.command(filepath.Join(s.binDir, "pg_ctl"), "stop", "-D", s.dataDir,
			"-m", mode, "-w", "-t", "30")
		out, err := runCtx(ctx, cmd)
		if err == nil {
			s.log.Info("stopped postgres", zap.String("mode", mode), zap.String("data_dir", s.dataDir))
			return nil
		}
		errs = append(errs, fmt.Errorf("pg_ctl stop -m %s on %s: %w: %s", mode, s.dataDir, err, lastLines(out, 3)))
	}
	return errors.Join(errs...)
}

// awaitExit waits, within ctx, until the process of pf has exited.
func awaitExit(ctx context.Context, pf pidFile) {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for pf.alive() {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ConnString returns a URL connecting as the superuser to database db.
func (s *Server) ConnString(db string) string {
	u := url.URL{Scheme: "postgres", User: url.User(Superuser), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

// Port is the TCP port the server listens on (127.0.0.1).
func (s *Server) Port() int { return s.port }

// DataDir is the server's data directory.
func (s *Server) DataDir() string { return s.dataDir }

// Major is the server's major version.
func (s *Server) Major() int { return s.major }

// Started reports whether this launcher started the server (rather than attaching).
func (s *Server) Started() bool { return s.started }

// PID is the postmaster's process id, or 0 when it is not running.
func (s *Server) PID() int {
	pf, err := readPidFile(s.dataDir)
	if err != nil || !pf.alive() {
		return 0
	}
	return pf.pid
}

// pidFile is what postmaster.pid says.
type pidFile struct {
	pid, port int
}

func readPidFile(dataDir string) (pidFile, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return pidFile{}, err
	}
	lines := strings.Split(string(b), "\n")
	var pf pidFile
	pf.pid, _ = strconv.Atoi(strings.TrimSpace(lines[0]))
	if len(lines) > 3 {
		pf.port, _ = strconv.Atoi(strings.TrimSpace(lines[3]))
	}
	return pf, nil
}

// alive reports whether the pid names a running postgres process.
func (pf pidFile) alive() bool {
	if pf.pid <= 0 {
		return false
	}
	if err := syscall.Kill(pf.pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	// /proc/PID/stat is "pid (comm) state …"; an exited child that nobody reaped yet
	// (state Z) is not a running server.
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pf.pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist) || !procMounted()
	}
	open, closing := strings.IndexByte(string(stat), '('), strings.LastIndexByte(string(stat), ')')
	if open < 0 || closing < open || len(stat) < closing+3 {
		return false
	}
	name, state := string(stat[open+1:closing]), stat[closing+2]
	return (name == "postgres" || name == "postmaster") && state != 'Z' && state != 'X'
}

func procMounted() bool {
	_, err := os.Stat("/proc/self")
	return err == nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
