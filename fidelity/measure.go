package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pgtestproxy/pgtestproxy/internal/pgserver"
	"github.com/pgtestproxy/pgtestproxy/migrations"
)

// directDB is the database the direct run uses; through the proxy the same name asks
// for the default template.
const directDB = "pgx_test"

// measure starts the server, prepares the direct database and the proxy binary, and
// runs the suite directly and through each proxy run. It returns the results in table
// order, direct first; done, when set, gets the results so far after each run.
func measure(ctx context.Context, opt options, log io.Writer, done func([]*runResult)) ([]*runResult, error) {
	if err := os.MkdirAll(opt.work, 0o755); err != nil {
		return nil, err
	}
	migDir, err := filepath.Abs("migrations")
	if err != nil {
		return nil, err
	}
	srv, err := pgserver.Start(ctx, pgserver.Config{DataDir: filepath.Join(opt.work, "pg")})
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	fmt.Fprintf(log, "fidelity: PostgreSQL %d on 127.0.0.1:%d (%s)\n", srv.Major(), srv.Port(), srv.DataDir())
	if err := migrateDirect(ctx, srv, migDir); err != nil {
		return nil, err
	}
	bin := filepath.Join(opt.work, "pgtestproxy")
	if err := buildProxy(ctx, opt.root, bin, log); err != nil {
		return nil, err
	}

	direct, err := runSuite(ctx, opt, "direct", srv.ConnString(directDB), log)
	if err != nil {
		return nil, err
	}
	results := []*runResult{direct}
	if done != nil {
		done(results)
	}
	for _, name := range opt.runs {
		res, err := runThroughProxy(ctx, opt, name, bin, srv.ConnString("postgres"), migDir, log)
		if err != nil {
			return nil, fmt.Errorf("run %s: %w", name, err)
		}
		results = append(results, res)
		if done != nil {
			done(results)
		}
	}
	return results, nil
}

// migrateDirect (re)creates the direct run's database and migrates it with the same
// migrations, through the same code, as the proxy's template.
func migrateDirect(ctx context.Context, srv *pgserver.Server, migDir string) error {
	conn, err := pgx.Connect(ctx, srv.ConnString("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	name := pgx.Identifier{directDB}.Sanitize()
	for _, sql := range []string{"DROP DATABASE IF EXISTS " + name + " WITH (FORCE)", "CREATE DATABASE " + name} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
	}
	dir, err := migrations.Open(migDir)
	if err != nil {
		return err
	}
	hash, err := dir.Hash(ctx, srv.Major(), 0)
	if err != nil {
		return err
	}
	if err := dir.Migrate(ctx, srv.ConnString(directDB), hash); err != nil {
		return fmt.Errorf("migrate %s: %w", directDB, err)
	}
	return nil
}

// buildProxy builds cmd/pgtestproxy of the checkout at root into bin.
func buildProxy(ctx context.Context, root, bin string, log io.Writer) error {
	began := time.Now()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/pgtestproxy")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/pgtestproxy in %s: %w", root, err)
	}
	fmt.Fprintf(log, "fidelity: built %s in %s\n", bin, time.Since(began).Round(time.Millisecond))
	return nil
}

// runThroughProxy starts a fresh proxy on the server and runs the suite through it
// with the DSN parameters of run name.
func runThroughProxy(ctx context.Context, opt options, name, bin, upstream, migDir string, log io.Writer) (*runResult, error) {
	p, err := startProxy(ctx, bin, upstream, migDir, opt.proxyFlags, filepath.Join(opt.work, "proxy-"+name+".log"))
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "fidelity: proxy for %s on %s, log %s\n", name, p.addr, p.logPath)
	res, err := runSuite(ctx, opt, name, p.dsn(directDB, runParams(name)), log)
	if serr := p.stop(); err == nil && serr != nil {
		fmt.Fprintf(log, "fidelity: stop proxy for %s: %v\n", name, serr)
	}
	return res, err
}

// runParams are the DSN parameters that select run name's mode and session.
func runParams(name string) map[string]string {
	switch name {
	case "db-key":
		return map[string]string{"mode": "db", "session": "fidelity-db-key"}
	case "tx":
		return map[string]string{"mode": "tx"}
	case "tx-key":
		return map[string]string{"mode": "tx", "session": "fidelity-tx-key"}
	}
	return nil
}
