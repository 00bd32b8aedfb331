package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// pgbenchTarget is where a pgbench row connects.
type pgbenchTarget struct {
	name    string
	addr    string // host:port
	db      string
	options string // PGOPTIONS
}

// steady is scenario 3: the real pgbench binary on persistent connections (-S and the
// TPC-B-like default), with a new connection per transaction (-C), and 8 connections
// sharing one tx-mode session key.
func (b *bench) steady(ctx context.Context) error {
	bin, err := findPgbench()
	if err != nil {
		b.rep.skip("pgbench not found: scenario 3 skipped")
		return nil
	}
	e := b.env
	direct := pgbenchTarget{nameDirect, fmt.Sprintf("127.0.0.1:%d", e.server.Port()), directDB(setPgbench), ""}
	targets := []pgbenchTarget{direct}
	if e.bouncer != "" {
		targets = append(targets, pgbenchTarget{namePgbouncer, e.bouncer, directDB(setPgbench), ""})
	}
	targets = append(targets,
		pgbenchTarget{nameProxyDB, e.proxy.addr, setPgbench, ""},
		pgbenchTarget{nameProxyTx, e.proxy.addr, setPgbench, "-c pgtestproxy.mode=tx"})
	baseline := nameDirect
	if e.bouncer != "" {
		baseline = namePgbouncer
	}
	const contention = "direct and pgbouncer: 4 clients on one scale-1 database; proxy rows: a clone per connection"
	groups := []struct {
		group, note string
		args        []string
	}{
		{"3 pgbench -S -c 4 -j 2 (persistent)", "", []string{"-S", "-c", "4", "-j", "2"}},
		{"3 pgbench TPC-B-like -c 4 -j 2 (persistent)", contention, []string{"-c", "4", "-j", "2"}},
		{"3 pgbench -S -C -c 4 -j 2 (connection per transaction)", "", []string{"-S", "-C", "-c", "4", "-j", "2"}},
	}
	for _, g := range groups {
		for _, t := range targets {
			tps, err := b.pgbench(ctx, bin, t, g.args)
			if err != nil {
				return fmt.Errorf("%s: %s: %w", g.group, t.name, err)
			}
			b.rep.add(row{Group: g.group, Name: t.name, Unit: "tps", Value: tps, Baseline: t.name == baseline, Note: g.note})
		}
	}
	group := "3 pgbench -S -c 8 -j 2, 8 connections on one lease"
	shared := []pgbenchTarget{
		{nameDirect + " (8 connections, one database)", direct.addr, direct.db, ""},
		{nameProxyTx + ", one session key", e.proxy.addr, setPgbench, "-c pgtestproxy.mode=tx -c pgtestproxy.session=bench-shared"},
	}
	for i, t := range shared {
		tps, err := b.pgbench(ctx, bin, t, []string{"-S", "-c", "8", "-j", "2"})
		if err != nil {
			return fmt.Errorf("%s: %s: %w", group, t.name, err)
		}
		b.rep.add(row{Group: group, Name: t.name, Unit: "tps", Value: tps, Baseline: i == 0})
	}
	return nil
}

func findPgbench() (string, error) {
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
	if len(matches) == 0 {
		return "", os.ErrNotExist
	}
	return matches[len(matches)-1], nil
}

var tpsLine = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)

// pgbench runs pgbench against t cfg.pgbenchRuns times and returns the median tps.
func (b *bench) pgbench(ctx context.Context, bin string, t pgbenchTarget, args []string) (float64, error) {
	host, port, _ := strings.Cut(t.addr, ":")
	var runs []float64
	for range b.cfg.pgbenchRuns {
		argv := append([]string{"-n", "-T", strconv.Itoa(b.cfg.pgbenchT), "-h", host, "-p", port, "-U", "postgres"}, args...)
		cmd := exec.CommandContext(ctx, bin, append(argv, t.db)...)
		cmd.Env = append(os.Environ(), "PGSSLMODE=disable", "PGOPTIONS="+t.options, "PGPASSWORD=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("pgbench %s: %w\n%s", strings.Join(argv, " "), err, out)
		}
		m := tpsLine.FindSubmatch(out)
		if m == nil {
			return 0, fmt.Errorf("no tps in pgbench output:\n%s", out)
		}
		tps, err := strconv.ParseFloat(string(m[1]), 64)
		if err != nil {
			return 0, err
		}
		runs = append(runs, tps)
	}
	return median(runs), nil
}
