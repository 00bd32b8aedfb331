package migrations

import (
	"context"
	"fmt"
	"strings"
)

// Step is one part of a template's build, a Migrator of its own: the migrations (a
// *Dir or a *Command), then seed files (a *Dir from OpenSeed).
type Step interface {
	Hash(ctx context.Context, serverMajor, catalogVersion int) (string, error)
	Migrate(ctx context.Context, connString, hash string) error
	Describe() string
}

// Sequence builds one template by applying its steps in order to the same database:
// typically migrations then seed data. Its hash covers every step's hash, in order.
type Sequence struct {
	steps  []Step
	byHash memo[[]string] // the steps' hashes behind each of ours
}

// NewSequence returns the template built by steps, in order.
func NewSequence(steps ...Step) *Sequence { return &Sequence{steps: steps} }

// OpenSeed returns the SQL file at path as a seed step: applied as a psql script (as
// a schema dump is), hashed by content.
func OpenSeed(path string) (*Dir, error) {
	d, err := OpenFormat(path, Dump)
	if err != nil {
		return nil, fmt.Errorf("open seed: %w", err)
	}
	d.label = "seed"
	return d, nil
}

// Hash combines the steps' hashes.
func (s *Sequence) Hash(ctx context.Context, serverMajor, catalogVersion int) (string, error) {
	hashes := make([]string, len(s.steps))
	for i, st := range s.steps {
		sum, err := st.Hash(ctx, serverMajor, catalogVersion)
		if err != nil {
			return "", err
		}
		hashes[i] = sum
	}
	sum := sequenceHash(hashes)
	s.byHash.put(sum, hashes)
	return sum, nil
}

// Migrate applies each step, in order, as it was when Hash returned hash.
func (s *Sequence) Migrate(ctx context.Context, connString, hash string) error {
	hashes, ok := s.byHash.get(hash)
	if !ok {
		return fmt.Errorf("migrate %s to %.12s: %w", s.Describe(), hash, ErrUnknownHash)
	}
	for i, st := range s.steps {
		if err := st.Migrate(ctx, connString, hashes[i]); err != nil {
			return err
		}
	}
	return nil
}

// Describe names the steps, in order.
func (s *Sequence) Describe() string {
	parts := make([]string, len(s.steps))
	for i, st := range s.steps {
		parts[i] = st.Describe()
	}
	return strings.Join(parts, ", then ")
}
