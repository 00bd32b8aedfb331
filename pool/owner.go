package pool

import (
	"context"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// heartbeatRetry is how soon a failed heartbeat is tried again: the owner lock is
// re-taken within this long of the upstream answering again.
const heartbeatRetry = 200 * time.Millisecond

// lockOwner opens the owner connection and takes the session advisory lock that tells
// other pools this instance is alive. It does not wait for the lock: a session of this
// pool that the server still holds (a broken connection not yet noticed) keeps it
// until the server notices, and the heartbeat tries again.
func (p *Pool) lockOwner(ctx context.Context) (*pgx.Conn, error) {
	c, err := pgx.ConnectConfig(ctx, p.catalogConfig())
	if err != nil {
		return nil, p.upstreamErr("connect to catalog "+p.cfg.CatalogDB, err)
	}
	var locked bool
	if err := c.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", p.owner).Scan(&locked); err != nil || !locked {
		c.Close(context.WithoutCancel(ctx))
		if err == nil {
			return nil, errLockHeld
		}
		return nil, p.upstreamErr("take owner lock", err)
	}
	return c, nil
}

// register records this pool in owners with a fresh heartbeat and its grace period.
func (p *Pool) register(ctx context.Context, c *pgx.Conn) error {
	host, _ := os.Hostname()
	_, err := c.Exec(ctx, `INSERT INTO owners (id, pid, host, grace) VALUES ($1, $2, $3, make_interval(secs => $4))
		ON CONFLICT (id) DO UPDATE SET heartbeat = now(), grace = excluded.grace`,
		p.owner, os.Getpid(), host, p.cfg.ReclaimGrace.Seconds())
	return p.upstreamErr("register pool in catalog", err)
}

// heartbeatLoop owns the owner connection: every HeartbeatInterval it records a
// heartbeat through it, which also proves the lock is still held. When the connection
// broke (an upstream restart, a terminated backend) it reconnects, re-takes the lock and
// re-registers, retrying every heartbeatRetry until the upstream answers.
func (p *Pool) heartbeatLoop() {
	defer p.wg.Done()
	timer := time.NewTimer(p.cfg.HeartbeatInterval)
	defer timer.Stop()
	lost := false
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-timer.C:
		}
		err := p.heartbeat(p.ctx)
		switch {
		case p.ctx.Err() != nil:
			return
		case err != nil:
			if !lost {
				p.log.Warn("owner heartbeat failed; retrying until the upstream answers", zap.Error(err))
			}
			lost = true
			timer.Reset(heartbeatRetry)
			continue
		case lost:
			p.log.Info("owner lock re-taken")
			lost = false
		}
		timer.Reset(p.cfg.HeartbeatInterval)
	}
}

// heartbeat records a sign of life on the owner connection, replacing the connection
// (and so re-taking the lock) when it broke.
func (p *Pool) heartbeat(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.ReclaimGrace/3)
	defer cancel()
	if p.lockC != nil {
		tag, err := p.lockC.Exec(ctx, `UPDATE owners SET heartbeat = now() WHERE id = $1`, p.owner)
		if err == nil && tag.RowsAffected() == 1 {
			p.countPeers(ctx)
			return nil
		}
		if err == nil { // the row went (forgotten while the lock was lost): register again
			return p.register(ctx, p.lockC)
		}
		// Closing the session releases its lock, if the server still has it.
		p.lockC.Close(ctx)
		p.lockC = nil
	}
	c, err := p.lockOwner(ctx)
	if err != nil {
		return err
	}
	if err := p.register(ctx, c); err != nil {
		c.Close(ctx)
		return err
	}
	p.lockC = c
	return nil
}
