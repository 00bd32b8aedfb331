package pool

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// Warm builds every configured template in the background and so starts filling its
// warm pool, so that the first Acquire does not wait for a build. A failed build is
// logged, not kept: the next Acquire of that template builds it again and returns the
// error as it would without Warm. done, when not nil, is called once per template when
// its build has finished (err nil) or failed. The work is joined by Close.
func (p *Pool) Warm(done func(template string, took time.Duration, err error)) {
	for _, name := range p.names {
		tpl := p.templates[name]
		p.goBackground(func() {
			began := time.Now()
			_, err := p.generationFor(p.ctx, tpl)
			took := time.Since(began)
			if err != nil && p.ctx.Err() == nil {
				p.log.Error("build template ahead of its first lease", zap.String("template", name), zap.Error(err))
			}
			if done != nil {
				done(name, took, err)
			}
		})
	}
}

// Prepare builds the template database selects (as Acquire resolves it) unless it is
// built already, and returns when it is, starting the refill of its warm pool.
func (p *Pool) Prepare(ctx context.Context, database string) error {
	tpl, err := p.resolve(database)
	if err != nil {
		return err
	}
	_, err = p.generationFor(ctx, tpl)
	return err
}
