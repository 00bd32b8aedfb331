package migrations

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"github.com/pgtestproxy/pgtestproxy/internal/progress"
)

// PrefixHashes returns, for the migrations that produced hash, the hash of each of
// their prefixes: prefixes[i] is the hash this directory would have if it held only
// its first i+1 migrations, so the last one is hash itself. ordered counts the leading
// migrations that are versioned (a Flyway directory's repeatables come after them). A
// schema dump has no prefixes (nil).
func (d *Dir) PrefixHashes(hash string) (prefixes []string, ordered int, err error) {
	h, ok := d.byHash.get(hash)
	if !ok {
		return nil, 0, fmt.Errorf("prefixes of %s at %.12s: %w", d.display, hash, ErrUnknownHash)
	}
	if h.snap.format == Dump || len(h.snap.files) == 0 {
		return nil, 0, nil
	}
	prefixes = make([]string, len(h.snap.prefixes))
	for i, digest := range h.snap.prefixes {
		prefixes[i] = finishHash(digest, h.major, h.catalog)
	}
	return prefixes, h.snap.ordered, nil
}

// MigrateSteps applies migrations from+1 … to (1-based, inclusive) of those that
// produced hash to the database at connString, which holds the first from of them
// already (a clone of the template of prefix from, or an empty database for 0).
func (d *Dir) MigrateSteps(ctx context.Context, connString, hash string, from, to int) error {
	snap, err := d.snapshot(hash)
	if err != nil {
		return err
	}
	if from < 0 || to > len(snap.files) || from > to {
		return fmt.Errorf("migrate %s: steps %d..%d out of range (%d files)", d.display, from+1, to, len(snap.files))
	}
	if from == to {
		return nil
	}
	part := *snap
	if snap.format == GolangMigrate {
		// golang-migrate reads the version a clone is at from its schema_migrations and
		// applies the rest of the source, so the source ends at to.
		part.files = snap.files[:to]
		return d.migrateSnapshot(progress.Shift(ctx, 0, len(snap.files)), connString, &part)
	}
	part.files = snap.files[from:to]
	return d.apply(progress.Shift(ctx, from, len(snap.files)), connString, &part)
}

// finishHash turns a directory digest into the hash Hash returns.
func finishHash(digest [32]byte, serverMajor, catalogVersion int) string {
	h := sha256.New()
	h.Write([]byte("pgtestproxy migrations v1\x00"))
	h.Write(digest[:])
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(serverMajor)))
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(catalogVersion)))
	return hex.EncodeToString(h.Sum(nil))
}

// PrefixHashes returns the hashes of the prefixes of the steps that produced hash: the
// first step's prefixes when it has them (a *Dir of an ordered layout), then one per
// seed step. A sequence whose first step has no prefixes (a command, a dump) has none.
func (s *Sequence) PrefixHashes(hash string) (prefixes []string, ordered int, err error) {
	hashes, ok := s.byHash.get(hash)
	if !ok {
		return nil, 0, fmt.Errorf("prefixes of %s at %.12s: %w", s.Describe(), hash, ErrUnknownHash)
	}
	first, ok := s.steps[0].(*Dir)
	if !ok {
		return nil, 0, nil
	}
	inner, ordered, err := first.PrefixHashes(hashes[0])
	if err != nil || len(inner) == 0 {
		return nil, 0, err
	}
	for _, h := range inner {
		prefixes = append(prefixes, sequenceHash([]string{h}))
	}
	for i := 2; i <= len(hashes); i++ {
		prefixes = append(prefixes, sequenceHash(hashes[:i]))
	}
	return prefixes, ordered, nil
}

// MigrateSteps applies steps from+1 … to of the prefixes PrefixHashes returned for
// hash: the first step's migrations, then the seed files.
func (s *Sequence) MigrateSteps(ctx context.Context, connString, hash string, from, to int) error {
	hashes, ok := s.byHash.get(hash)
	if !ok {
		return fmt.Errorf("migrate %s to %.12s: %w", s.Describe(), hash, ErrUnknownHash)
	}
	first, ok := s.steps[0].(*Dir)
	if !ok {
		return fmt.Errorf("migrate %s: its first step has no prefixes", s.Describe())
	}
	inner, _, err := first.PrefixHashes(hashes[0])
	if err != nil {
		return err
	}
	n := len(inner)
	if from < n {
		if err := first.MigrateSteps(ctx, connString, hashes[0], from, min(to, n)); err != nil {
			return err
		}
	}
	for i := max(from, n); i < to; i++ {
		if err := s.steps[i-n+1].Migrate(ctx, connString, hashes[i-n+1]); err != nil {
			return err
		}
	}
	return nil
}

// sequenceHash combines the hashes of a sequence's steps.
func sequenceHash(hashes []string) string {
	h := sha256.New()
	h.Write([]byte("pgtestproxy sequence v1\x00"))
	for _, sum := range hashes {
		h.Write([]byte(sum + "\x00"))
	}
	return hex.EncodeToString(h.Sum(nil))
}
