package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// templates is scenario 4: building a template cold (the proxy's build, pgtestdb's
// first test) against golang-migrate alone, and one clone per strategy.
func (b *bench) templates(ctx context.Context) error {
	e := b.env
	for _, set := range []string{setSmall, setLarge} { // builds the template when no scenario before did
		if err := oneTest(ctx, urlOpener(e.url(e.proxy.addr, set)), selectOne); err != nil {
			return err
		}
	}
	stats, err := console(ctx, e.proxy.addr, "TEMPLATES")
	if err != nil {
		return err
	}
	byName := map[string]map[string]string{}
	for _, s := range stats {
		byName[s["name"]] = s
	}
	for _, set := range []string{setSmall, setLarge} {
		group := "4 template build, " + set + " set"
		var plain, first []float64
		for i := range b.cfg.repeats {
			dir, err := e.saltedSet(set, fmt.Sprintf("tpl%d", i))
			if err != nil {
				return err
			}
			t0 := time.Now()
			if err := e.migrateInto(ctx, fmt.Sprintf("bench_migrate_%d", uniq.Add(1)), dir); err != nil {
				return err
			}
			plain = append(plain, ms(time.Since(t0)))
			t0 = time.Now()
			if err := oneTest(ctx, pgtestdbOpener(e, dir), selectOne); err != nil {
				return err
			}
			first = append(first, ms(time.Since(t0)))
		}
		b.rep.add(row{Group: group, Name: nameMigrate + " (CREATE DATABASE + Up)", Unit: "ms", Value: median(plain), Baseline: true})
		b.rep.add(row{Group: group, Name: namePgtestdb + ", first test", Unit: "ms", Value: median(first),
			Note: "template build + one clone + connect + drop"})
		if v, err := strconv.ParseFloat(byName[set]["build_ms"], 64); err == nil {
			s := byName[set]
			b.rep.add(row{Group: group, Name: nameProxyBuild, Unit: "ms", Value: v,
				Note: "SHOW TEMPLATES build_ms of this run's cold build (one sample); strategy chosen: " + s["strategy"]})
		}
		if err := b.cloneCost(ctx, set, byName[set]); err != nil {
			return err
		}
	}
	return nil
}

// cloneCost times CREATE DATABASE … TEMPLATE … STRATEGY per strategy.
func (b *bench) cloneCost(ctx context.Context, set string, proxyStats map[string]string) error {
	group := "4 clone, " + set + " set"
	n := max(5, b.cfg.repeats*3)
	tpl := pgx.Identifier{cloneTemplateDB(set)}.Sanitize()
	for _, strategy := range []string{"WAL_LOG", "FILE_COPY"} {
		var took []float64
		for range n {
			id := pgx.Identifier{fmt.Sprintf("bench_strategy_%d", uniq.Add(1))}.Sanitize()
			t0 := time.Now()
			if _, err := b.admin.ExecContext(ctx, "CREATE DATABASE "+id+" TEMPLATE "+tpl+" STRATEGY "+strategy); err != nil {
				return err
			}
			took = append(took, ms(time.Since(t0)))
			if _, err := b.admin.ExecContext(ctx, "DROP DATABASE "+id); err != nil {
				return err
			}
		}
		b.rep.add(row{Group: group, Name: "CREATE DATABASE … STRATEGY " + strategy, Unit: "ms", Value: median(took),
			Baseline: strategy == "WAL_LOG", Note: fmt.Sprintf("median of %d", n)})
	}
	for _, col := range []string{"wal_log_ms", "file_copy_ms"} {
		if v, err := strconv.ParseFloat(proxyStats[col], 64); err == nil {
			b.rep.add(row{Group: group, Name: "pgtestproxy's own timing, " + col, Unit: "ms", Value: v,
				Note: "SHOW TEMPLATES: the proxy times both once and clones with the faster"})
		}
	}
	return nil
}
