package pool

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// buildFor returns the template for hash, building it from the longest prefix of its
// migrations whose template exists when its Migrator is a PrefixMigrator, else from an
// empty database.
func (p *Pool) buildFor(ctx context.Context, tpl *template, hash string) (*generation, error) {
	pm, ok := tpl.mig.(PrefixMigrator)
	if !ok {
		return p.build(ctx, tpl, p.fullSpec(tpl, hash))
	}
	prefixes, ordered, err := pm.PrefixHashes(hash)
	if err != nil {
		return nil, fmt.Errorf("template %q: prefixes of migrations: %w", tpl.name, err)
	}
	if len(prefixes) < 2 || prefixes[len(prefixes)-1] != hash {
		return p.build(ctx, tpl, p.fullSpec(tpl, hash))
	}
	from, base, err := p.longestPrefix(ctx, prefixes[:len(prefixes)-1])
	if err != nil {
		return nil, err
	}
	var gen *generation
	for _, to := range checkpoints(from, ordered, len(prefixes)) {
		spec := buildSpec{hash: prefixes[to-1], datname: p.templateName(prefixes[to-1]), prefix: to < len(prefixes),
			base: base, from: from, migrate: func(ctx context.Context, cs string, from int) error {
				return pm.MigrateSteps(ctx, cs, hash, from, to)
			}}
		if gen, err = p.build(ctx, tpl, spec); err != nil {
			return nil, err
		}
		from, base = to, gen.datname
	}
	return gen, nil
}

// checkpoints returns the steps at which a build from a base holding from of n steps
// seals a template, in order: the last two versioned migrations (the bases for editing
// the newest migration and for adding one) and the whole.
func checkpoints(from, ordered, n int) []int {
	var out []int
	for _, c := range []int{ordered - 1, ordered, n} {
		if c > from && c >= 1 && c <= n && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// longestPrefix returns how many steps the longest of prefixes whose template is ready
// holds, and its database (0 and "" when none is).
func (p *Pool) longestPrefix(ctx context.Context, prefixes []string) (int, string, error) {
	names := make([]string, len(prefixes))
	for i, h := range prefixes {
		names[i] = p.templateName(h)
	}
	rows, err := p.cat.Query(ctx, `SELECT t.datname FROM template_dbs t JOIN pg_database d ON d.datname = t.datname
		WHERE t.state = 'ready' AND d.datistemplate AND t.datname = ANY($1)`, names)
	ready, err2 := pgx.CollectRows(rows, pgx.RowTo[string])
	if err == nil {
		err = err2
	}
	if err != nil {
		return 0, "", p.upstreamErr("look for prefix templates", err)
	}
	for i := len(names) - 1; i >= 0; i-- {
		if slices.Contains(ready, names[i]) {
			return i + 1, names[i], nil
		}
	}
	return 0, "", nil
}
