package migrations

import (
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/golang-migrate/migrate/v4/source"
)

// Format is the layout of a migrations directory (or a single SQL file).
type Format string

const (
	// GolangMigrate is NNN_name.up.sql / NNN_name.down.sql, applied by golang-migrate.
	GolangMigrate Format = "golang-migrate"
	// Goose is NNN_name.sql with -- +goose Up / Down sections.
	Goose Format = "goose"
	// Dbmate is NNN_name.sql with -- migrate:up / migrate:down sections.
	Dbmate Format = "dbmate"
	// Flyway is V<version>__<desc>.sql in version order, then R__<desc>.sql by name.
	Flyway Format = "flyway"
	// Prisma is <timestamp>_<name>/migration.sql in name order.
	Prisma Format = "prisma"
	// Dump is one SQL file applied as a psql script: pg_dump output, structure.sql, a seed.
	Dump Format = "dump"
)

// Formats lists the directory layouts Open detects, in the order messages name them.
var Formats = []Format{GolangMigrate, Goose, Dbmate, Flyway, Prisma}

// ParseFormat returns the directory layout called name.
func ParseFormat(name string) (Format, error) {
	for _, f := range Formats {
		if string(f) == name {
			return f, nil
		}
	}
	return "", fmt.Errorf("unknown migrations format %q: want one of %s", name, formatList())
}

func formatList() string {
	names := make([]string, len(Formats))
	for i, f := range Formats {
		names[i] = string(f)
	}
	return strings.Join(names, ", ")
}

var (
	numberedRE   = regexp.MustCompile(`^([0-9]+)_.*\.sql$`)
	flywayVerRE  = regexp.MustCompile(`^V([0-9]+(?:[._][0-9]+)*)__.*\.sql$`)
	flywayRepRE  = regexp.MustCompile(`^R__.+\.sql$`)
	flywayUndoRE = regexp.MustCompile(`^U[0-9].*__.*\.sql$`)
	gooseUpRE    = regexp.MustCompile(`(?im)^--\s*\+goose\s+up\b`)
	dbmateUpRE   = regexp.MustCompile(`(?im)^--\s*migrate:up\b`)
)

// entry is one migration file of a directory, before its contents are parsed.
type entry struct {
	name    string // relative to the directory
	version uint   // golang-migrate's version
}

// listing is what a directory holds: its top-level files and, for Prisma, the
// migration.sql of each sub-directory.
type listing struct {
	files   []string
	subdirs []string // sub-directories holding a migration.sql
}

// detect picks the layout of a directory from its names and, for NNN_name.sql, from
// the section markers inside them. A directory with no SQL at all is an (empty)
// golang-migrate directory.
func detect(l listing, read func(string) ([]byte, error), display string) (Format, error) {
	found := map[Format]string{} // a file of each layout seen
	var unknown []string
	for _, name := range l.files {
		if !strings.HasSuffix(name, ".sql") {
			continue
		}
		f, err := classifyName(name, read)
		if err != nil {
			return "", err
		}
		if f == "" {
			unknown = append(unknown, name)
		} else if found[f] == "" {
			found[f] = name
		}
	}
	if len(l.subdirs) > 0 {
		found[Prisma] = path.Join(l.subdirs[0], "migration.sql")
	}
	switch {
	case len(found) == 1:
		for f := range found {
			return f, nil
		}
	case len(found) > 1:
		var parts []string
		for _, f := range Formats {
			if found[f] != "" {
				parts = append(parts, fmt.Sprintf("%s (%s)", f, found[f]))
			}
		}
		return "", fmt.Errorf("migrations in %s: ambiguous layout, found files of %s: name the format (one of %s)",
			display, strings.Join(parts, " and "), formatList())
	case len(unknown) > 0:
		return "", fmt.Errorf("migrations in %s: unknown layout, found %s matching none of golang-migrate (NNN_name.up.sql), "+
			"goose (NNN_name.sql with -- +goose Up), dbmate (NNN_name.sql with -- migrate:up), "+
			"flyway (V1__name.sql, R__name.sql), prisma (TIMESTAMP_name/migration.sql)",
			display, strings.Join(unknown[:min(len(unknown), 3)], ", "))
	}
	return GolangMigrate, nil
}

// classifyName says which layout a top-level .sql file belongs to ("" = none).
func classifyName(name string, read func(string) ([]byte, error)) (Format, error) {
	if _, err := source.DefaultParse(name); err == nil {
		return GolangMigrate, nil
	}
	if flywayVerRE.MatchString(name) || flywayRepRE.MatchString(name) || flywayUndoRE.MatchString(name) {
		return Flyway, nil
	}
	if !numberedRE.MatchString(name) {
		return "", nil
	}
	data, err := read(name)
	if err != nil {
		return "", err
	}
	switch {
	case gooseUpRE.Match(data):
		return Goose, nil
	case dbmateUpRE.Match(data):
		return Dbmate, nil
	}
	return "", nil
}

// selectFiles returns the migrations of format f in the order they apply.
func selectFiles(f Format, l listing, display string) ([]entry, error) {
	var out []entry
	switch f {
	case GolangMigrate:
		seen := map[uint]string{}
		for _, name := range l.files {
			m, err := source.DefaultParse(name)
			if err != nil || m.Direction != source.Up {
				continue
			}
			if other, dup := seen[m.Version]; dup {
				return nil, fmt.Errorf("migrations in %s: %s and %s share version %d", display, other, name, m.Version)
			}
			seen[m.Version] = name
			out = append(out, entry{name: name, version: m.Version})
		}
		slices.SortFunc(out, func(a, b entry) int { return cmpUint(a.version, b.version) })
	case Goose, Dbmate:
		return numbered(f, l.files, display)
	case Flyway:
		return flywayOrder(l.files, display)
	case Prisma:
		for _, d := range l.subdirs {
			out = append(out, entry{name: path.Join(d, "migration.sql")})
		}
		slices.SortFunc(out, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	}
	return out, nil
}

// numbered returns goose's or dbmate's NNN_name.sql files in version order.
func numbered(f Format, files []string, display string) ([]entry, error) {
	var out []entry
	seen := map[uint64]string{}
	for _, name := range files {
		if f == Goose && numberedGoRE.MatchString(name) {
			return nil, fmt.Errorf("migrations in %s: %s is a goose Go migration, which only goose can run: use a migrate command instead", display, name)
		}
		m := numberedRE.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		v, err := strconv.ParseUint(m[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("migrations in %s: %s: version %s: %w", display, name, m[1], err)
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations in %s: %s and %s share version %d", display, other, name, v)
		}
		seen[v] = name
		out = append(out, entry{name: name, version: uint(v)})
	}
	slices.SortFunc(out, func(a, b entry) int { return cmpUint(a.version, b.version) })
	return out, nil
}

var numberedGoRE = regexp.MustCompile(`^[0-9]+_.*\.go$`)

// flywayOrder returns Flyway's versioned migrations by version (each dot- or
// underscore-separated part compared as a number: V1_1 < V1_10 < V2), then its
// repeatable ones by name. Undo migrations are never applied.
func flywayOrder(files []string, display string) ([]entry, error) {
	type versioned struct {
		parts []uint64
		name  string
	}
	var vs []versioned
	var rs []string
	for _, name := range files {
		if m := flywayVerRE.FindStringSubmatch(name); m != nil {
			var parts []uint64
			for p := range strings.FieldsFuncSeq(m[1], func(r rune) bool { return r == '.' || r == '_' }) {
				n, err := strconv.ParseUint(p, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("migrations in %s: %s: version part %s: %w", display, name, p, err)
				}
				parts = append(parts, n)
			}
			for len(parts) > 1 && parts[len(parts)-1] == 0 { // Flyway: 1.0 is 1
				parts = parts[:len(parts)-1]
			}
			vs = append(vs, versioned{parts, name})
		} else if flywayRepRE.MatchString(name) {
			rs = append(rs, name)
		}
	}
	slices.SortFunc(vs, func(a, b versioned) int { return slices.Compare(a.parts, b.parts) })
	for i := 1; i < len(vs); i++ {
		if slices.Equal(vs[i-1].parts, vs[i].parts) {
			return nil, fmt.Errorf("migrations in %s: %s and %s share a version", display, vs[i-1].name, vs[i].name)
		}
	}
	slices.Sort(rs)
	out := make([]entry, 0, len(vs)+len(rs))
	for _, v := range vs {
		out = append(out, entry{name: v.name})
	}
	for _, r := range rs {
		out = append(out, entry{name: r})
	}
	return out, nil
}

func cmpUint(a, b uint) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// readListing lists root in fsys: its files and the sub-directories holding a
// migration.sql.
func readListing(fsys fs.FS, root string) (listing, error) {
	dirents, err := fs.ReadDir(fsys, root)
	if err != nil {
		return listing{}, err
	}
	var l listing
	for _, e := range dirents {
		if !e.IsDir() {
			l.files = append(l.files, e.Name())
			continue
		}
		if fi, err := fs.Stat(fsys, path.Join(root, e.Name(), "migration.sql")); err == nil && !fi.IsDir() {
			l.subdirs = append(l.subdirs, e.Name())
		}
	}
	return l, nil
}
