package pool

import (
	"context"
	"fmt"
)

// ReloadResult is one template as Reload found it.
type ReloadResult struct {
	Name    string // template name ("" = the default template)
	Current string // hash of the template built now ("" = none yet)
	Hash    string // what its migrations hash to now
}

// Changed reports whether the next lease of the template builds (or finds) another
// template database.
func (r ReloadResult) Changed() bool { return r.Current != r.Hash }

// Reload reads every template's migrations again and hashes them. Nothing is dropped
// or built here: the next Acquire of a changed template builds the new one (as it
// would have noticed by itself) and leases its clones.
func (p *Pool) Reload(ctx context.Context) ([]ReloadResult, error) {
	out := make([]ReloadResult, 0, len(p.names))
	for _, name := range p.names {
		tpl := p.templates[name]
		r := ReloadResult{Name: name}
		if g := tpl.cur.Load(); g != nil {
			r.Current = g.hash
		}
		hash, err := tpl.mig.Hash(ctx, p.major, p.cfg.catalogVersion)
		if err != nil {
			return nil, fmt.Errorf("template %q: hash migrations: %w", name, err)
		}
		r.Hash = hash
		out = append(out, r)
	}
	return out, nil
}
