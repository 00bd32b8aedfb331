package pool

import (
	"context"
	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"time"

	"github.com/jackc/pgx/v5"
)

// TemplateStats describes one configured template, for the admin console. Counts are
// across every pool sharing the catalog.
type TemplateStats struct {
	Name      string        // template name ("" = the default template)
	Hash      string        // hash of the migrations it was last built from ("" = not built yet)
	Source    string        // how it is built: its Migrator's Describe
	Database  string        // the template database
	Ready     int           // clones ready to lease
	Leased    int           // clones leased
	Creating  int           // clones being made
	BuildTime time.Duration // create + migrate + seal
	BuiltAt   time.Time
	LastUsed  time.Time     // last lease of it, across every pool (as last written to the catalog)
	Strategy  string        // CREATE DATABASE strategy used for clones ("" = server default)
	WALLog    time.Duration // measured clone time with WAL_LOG (0 = not measured)
	FileCopy  time.Duration // measured clone time with FILE_COPY (0 = not measured)
	Base      string        // template database it was cloned from ("" = built from an empty database)
	BaseSteps int           // migration steps (files, then seed files) Base held; the rest were applied
}

// Stats returns one row per configured template, sorted by name.
func (p *Pool) Stats(ctx context.Context) ([]TemplateStats, error) {
	out := make([]TemplateStats, 0, len(p.names))
	var dbs []string
	for _, name := range p.names {
		s := TemplateStats{Name: name, Source: p.templates[name].mig.Describe()}
		if g := p.templates[name].cur.Load(); g != nil {
			s.Hash, s.Database, s.Strategy = g.hash, g.datname, g.strategy
			dbs = append(dbs, g.datname)
		}
		out = append(out, s)
	}
	if len(dbs) == 0 {
		return out, nil
	}
	rows, err := p.cat.Query(ctx, `SELECT t.datname, coalesce(t.build_ms, 0), coalesce(t.built_at, t.created_at), coalesce(t.last_used, t.created_at),
			coalesce(t.wal_log_ms, 0), coalesce(t.file_copy_ms, 0), t.base, t.base_steps,
			count(m.datname) FILTER (WHERE m.state = 'ready'),
			count(m.datname) FILTER (WHERE m.state = 'leased'),
			count(m.datname) FILTER (WHERE m.state = 'creating')
		FROM template_dbs t LEFT JOIN migrated_dbs m ON m.template_db = t.datname
		WHERE t.datname = ANY($1) GROUP BY t.datname, t.base, t.base_steps`, dbs)
	if err != nil {
		return nil, p.upstreamErr("read stats", err)
	}
	defer rows.Close()
	for rows.Next() {
		var db, base string
		var baseSteps int
		var build, wal, file float64
		var built, used time.Time
		var ready, leased, creating int
		if err := rows.Scan(&db, &build, &built, &used, &wal, &file, &base, &baseSteps, &ready, &leased, &creating); err != nil {
			return nil, p.upstreamErr("read stats", err)
		}
		for i := range out {
			if out[i].Database == db {
				s := &out[i]
				s.LastUsed = used
				s.BuildTime, s.BuiltAt, s.WALLog, s.FileCopy = fromMS(build), built, fromMS(wal), fromMS(file)
				s.Ready, s.Leased, s.Creating = ready, leased, creating
				s.Base, s.BaseSteps = base, baseSteps
			}
		}
	}
	parked := p.parkedNames()
	for i := range out {
		// This process's parked clones are leased in the catalog but ready to lease here.
		n := len(parked[out[i].Database])
		out[i].Ready, out[i].Leased = out[i].Ready+n, out[i].Leased-n
		// The catalog learns of leases in batches; this process knows its own at once.
		if g := p.templates[out[i].Name].cur.Load(); g != nil {
			if t := time.Unix(0, g.lastUsed.Load()); t.After(out[i].LastUsed) {
				out[i].LastUsed = t
			}
		}
	}
	return out, p.upstreamErr("read stats", rows.Err())
}

// LeaseInfo describes one leased clone, for the admin console.
type LeaseInfo struct {
	Database   string         // the clone
	Template   string         // template name the lease asked for ("" = default)
	TemplateDB string         // template database it was cloned from
	Mode       leasemode.Mode // db or tx
	Since      time.Time      // when it was leased
	Owner      int64          // id of the pool holding it
	OwnerPID   int            // that pool's process id (0 = unknown)
	OwnerHost  string         // that pool's host name
	Mine       bool           // held by this pool
}

// Leases returns every leased clone in the catalog (all pools sharing it), oldest first.
func (p *Pool) Leases(ctx context.Context) ([]LeaseInfo, error) {
	rows, err := p.cat.Query(ctx, `SELECT m.datname, coalesce(m.lease_template, ''), m.template_db,
			coalesce(m.mode, ''), coalesce(m.leased_at, m.created_at), m.owner, coalesce(o.pid, 0), coalesce(o.host, '')
		FROM migrated_dbs m LEFT JOIN owners o ON o.id = m.owner
		WHERE m.state = 'leased' ORDER BY m.leased_at, m.datname`)
	if err != nil {
		return nil, p.upstreamErr("read leases", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (LeaseInfo, error) {
		var l LeaseInfo
		var mode string
		err := r.Scan(&l.Database, &l.Template, &l.TemplateDB, &mode, &l.Since, &l.Owner, &l.OwnerPID, &l.OwnerHost)
		l.Mode, l.Mine = leasemode.Mode(mode), l.Owner == p.owner
		return l, err
	})
	if err != nil {
		return nil, p.upstreamErr("read leases", err)
	}
	// This process's parked clones are no leases; a clone it took from its parked ones
	// was leased when it took it, not when the catalog last saw it leased.
	p.mu.Lock()
	mine := out[:0]
	for _, l := range out {
		if l.Mine {
			own, ok := p.leases[l.Database]
			if !ok {
				continue
			}
			l.Since = own.since
		}
		mine = append(mine, l)
	}
	p.mu.Unlock()
	return mine, nil
}

func fromMS(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
