// Package progress carries a template build's progress from the code that applies the
// migrations (package migrations) to the code that builds the template (package pool)
// through the build's context, so that neither imports the other. The builder puts a
// Func in the context with With; the migrator calls Report as each step begins.
package progress

import "context"

// Step is the part of a build that has just begun: the N-th of Total (1-based), named
// Name (a migration's file name relative to its directory, or a command).
type Step struct {
	N, Total int
	Name     string
}

// Func receives the steps of a build as they begin, from the goroutine applying them.
type Func func(Step)

type key struct{}

// With returns ctx carrying f; the Func already in ctx, if any, is called too.
func With(ctx context.Context, f Func) context.Context {
	if prev, ok := ctx.Value(key{}).(Func); ok {
		inner := f
		f = func(s Step) { prev(s); inner(s) }
	}
	return context.WithValue(ctx, key{}, f)
}

// Report tells ctx's Func, if any, that step s has begun.
func Report(ctx context.Context, s Step) {
	if f, ok := ctx.Value(key{}).(Func); ok {
		f(s)
	}
}

// Shift returns ctx whose Func, if any, sees steps numbered from+1… of total: a build
// that applies only the last migrations of a set (on a clone of a template holding the
// first from) reports where it is in the whole set.
func Shift(ctx context.Context, from, total int) context.Context {
	f, ok := ctx.Value(key{}).(Func)
	if !ok {
		return ctx
	}
	return context.WithValue(ctx, key{}, Func(func(s Step) {
		s.N, s.Total = s.N+from, total
		f(s)
	}))
}
