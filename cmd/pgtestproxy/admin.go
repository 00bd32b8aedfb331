package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/pgtestproxy/pgtestproxy/pool"
	"github.com/pgtestproxy/pgtestproxy/proxy"
)

// adminTables answers the console's statements that belong to the pool: SHOW
// TEMPLATES, POOLS, LEASES, the pool's columns of SHOW STATS, GC and RELOAD.
func adminTables(p *pool.Pool) proxy.AdminFunc {
	return func(ctx context.Context, what string, describe bool) ([]string, [][]string, error) {
		switch what {
		case "TEMPLATES":
			return showTemplates(ctx, p)
		case "POOLS":
			return showPools(ctx, p)
		case "LEASES":
			return showLeases(ctx, p)
		case "STATS":
			c := p.Counters()
			return []string{"clones_made", "clones_dropped", "clones_reclaimed", "clones_reused", "clones_not_reused",
					"templates_built", "clone_p50_ms", "clone_p99_ms", "build_p50_ms", "build_p99_ms"},
				[][]string{{fmt.Sprint(c.ClonesMade), fmt.Sprint(c.ClonesDropped), fmt.Sprint(c.Reclaimed),
					fmt.Sprint(c.ClonesReused), fmt.Sprint(c.ClonesNotReused),
					fmt.Sprint(c.Builds), ms(c.CloneTime.Quantile(0.5)), ms(c.CloneTime.Quantile(0.99)),
					ms(c.BuildTime.Quantile(0.5)), ms(c.BuildTime.Quantile(0.99))}}, nil
		case "GC":
			columns := []string{"action", "database"}
			if describe {
				return columns, nil, nil
			}
			rep, err := p.GC(ctx)
			if err != nil {
				return nil, nil, err
			}
			var rows [][]string
			for _, l := range []struct {
				what  string
				names []string
			}{{"reclaimed", rep.Reclaimed}, {"dropped clone", rep.Clones}, {"dropped template", rep.Templates}} {
				for _, n := range l.names {
					rows = append(rows, []string{l.what, n})
				}
			}
			if rep.Forgotten > 0 {
				rows = append(rows, []string{"forgot missing databases", fmt.Sprint(rep.Forgotten)})
			}
			return columns, rows, nil
		case "RELOAD":
			columns := []string{"template", "hash", "built_hash", "changed"}
			if describe {
				return columns, nil, nil
			}
			res, err := p.Reload(ctx)
			if err != nil {
				return nil, nil, err
			}
			rows := make([][]string, len(res))
			for i, r := range res {
				rows[i] = []string{templateName(r.Name), r.Hash, r.Current, fmt.Sprint(r.Changed())}
			}
			return columns, rows, nil
		}
		return nil, nil, fmt.Errorf("unknown admin table %q", what)
	}
}

func showTemplates(ctx context.Context, p *pool.Pool) ([]string, [][]string, error) {
	stats, err := p.Stats(ctx)
	if err != nil {
		return nil, nil, err
	}
	rows := make([][]string, len(stats))
	for i, s := range stats {
		rows[i] = []string{templateName(s.Name), s.Database, s.Hash, migrationCount(s.Source), ms(s.BuildTime),
			stamp(s.BuiltAt), s.Strategy, ms(s.WALLog), ms(s.FileCopy), stamp(s.LastUsed), s.Source,
			s.Base, strconv.Itoa(s.BaseSteps)}
	}
	return []string{"name", "database", "hash", "migrations", "build_ms", "built_at", "strategy",
		"wal_log_ms", "file_copy_ms", "last_used", "source", "base", "base_steps"}, rows, nil
}

// migrationCount picks the "N files" (or "N migrations") a source's description ends with ("" when
// it says none: a --migrate-cmd, a single file).
func migrationCount(source string) string {
	for part := range strings.SplitSeq(source, ",") {
		f := strings.Fields(strings.NewReplacer("(", " ", ")", " ").Replace(part))
		if len(f) >= 2 && (strings.HasPrefix(f[len(f)-1], "migration") || strings.HasPrefix(f[len(f)-1], "file")) {
			return f[len(f)-2]
		}
	}
	return ""
}

func showPools(ctx context.Context, p *pool.Pool) ([]string, [][]string, error) {
	stats, err := p.Stats(ctx)
	if err != nil {
		return nil, nil, err
	}
	rows := make([][]string, len(stats))
	for i, s := range stats {
		rows[i] = []string{templateName(s.Name), fmt.Sprint(s.Ready), fmt.Sprint(s.Leased), fmt.Sprint(s.Creating)}
	}
	return []string{"template", "ready", "leased", "creating"}, rows, nil
}

func showLeases(ctx context.Context, p *pool.Pool) ([]string, [][]string, error) {
	leases, err := p.Leases(ctx)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	rows := make([][]string, len(leases))
	for i, l := range leases {
		rows[i] = []string{l.Database, templateName(l.Template), string(l.Mode), stamp(l.Since),
			fmt.Sprintf("%.1f", now.Sub(l.Since).Seconds()), fmt.Sprint(l.OwnerPID), l.OwnerHost, fmt.Sprint(l.Mine)}
	}
	return []string{"database", "template", "mode", "since", "age_s", "owner_pid", "owner_host", "mine"}, rows, nil
}

func templateName(n string) string {
	if n == "" {
		return "(default)"
	}
	return n
}

func ms(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond))
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
