package pool

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/pgtestproxy/pgtestproxy/internal/progress"
)

// BuildProgress is where a template build is (Config.Progress).
type BuildProgress struct {
	Template string        // the template's name ("" is the default template)
	Step     int           // the migration being applied, from 1; 0 before the first
	Steps    int           // migrations in the step's directory (a seed file is a step of its own)
	File     string        // the migration's file, relative to its directory, or the command
	Elapsed  time.Duration // since the build began
	Done     bool          // the build has ended (built or failed)
}

// buildTracker follows one build: it logs each migration as it begins (debug), and
// every ProgressInterval while the build runs (info), and tells Config.Progress.
type buildTracker struct {
	p     *Pool
	log   *zap.Logger
	began time.Time
	stop  chan struct{}
	done  sync.WaitGroup

	mu  sync.Mutex
	cur BuildProgress
}

// trackBuild starts following a build of tpl and returns ctx carrying the progress
// hook for the migrator; end stops it.
func (p *Pool) trackBuild(ctx context.Context, log *zap.Logger, tpl *template) (context.Context, *buildTracker) {
	t := &buildTracker{p: p, log: log, began: time.Now(), stop: make(chan struct{}),
		cur: BuildProgress{Template: tpl.name}}
	t.notify(t.cur)
	t.done.Add(1)
	go t.tick()
	return progress.With(ctx, t.step), t
}

func (t *buildTracker) step(s progress.Step) {
	t.mu.Lock()
	t.cur.Step, t.cur.Steps, t.cur.File = s.N, s.Total, s.Name
	t.cur.Elapsed = time.Since(t.began)
	cur := t.cur
	t.mu.Unlock()
	t.log.Debug("applying migration", zap.Int("n", s.N), zap.Int("total", s.Total), zap.String("file", s.Name),
		zap.Duration("elapsed", cur.Elapsed))
	t.notify(cur)
}

// tick logs the build's state every ProgressInterval until end.
func (t *buildTracker) tick() {
	defer t.done.Done()
	tk := time.NewTicker(t.p.cfg.ProgressInterval)
	defer tk.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tk.C:
			t.mu.Lock()
			cur := t.cur
			t.mu.Unlock()
			t.log.Info("template build in progress", zap.Int("n", cur.Step), zap.Int("total", cur.Steps),
				zap.String("file", cur.File), zap.Duration("elapsed", time.Since(t.began).Round(time.Second)))
		}
	}
}

// end stops following the build.
func (t *buildTracker) end() {
	close(t.stop)
	t.done.Wait()
	t.mu.Lock()
	t.cur.Done, t.cur.Elapsed = true, time.Since(t.began)
	cur := t.cur
	t.mu.Unlock()
	t.notify(cur)
}

func (t *buildTracker) notify(b BuildProgress) {
	if t.p.cfg.Progress != nil {
		t.p.cfg.Progress(b)
	}
}
