package migrations

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

// ErrUnknownHash is returned (wrapped) by Migrate for a hash this Dir did not produce,
// or produced so long ago that its snapshot was evicted: call Hash again.
var ErrUnknownHash = errors.New("hash is not a snapshot of this migrations directory")

// Dir is one migrations directory of a known layout (see Format), or one SQL file
// applied as a script. Its methods are safe for concurrent use.
type Dir struct {
	fsys    fs.FS
	root    string // directory inside fsys
	only    string // the one file of a Dump, inside root; "" for a directory
	format  Format // "" = detect from the contents whenever the listing changes
	label   string // what Describe calls it instead of its format ("seed"); "" = the format
	display string // how messages name the directory or file

	osDir string              // the directory on disk that holds the migrations; "" for OpenFS
	cache *guarded[*snapshot] // the snapshot while nothing changed in osDir; nil for OpenFS

	mu      sync.Mutex
	listKey string    // (name, size, mtime) listing the cached snapshot was read from
	snap    *snapshot // contents read for listKey
	byHash  memo[hashed]
}

// hashed is what one hash Hash returned stands for.
type hashed struct {
	snap           *snapshot
	major, catalog int // the server major and catalog versions it was hashed for
}

// snapshot is the up parts of a directory's migrations as read at one moment.
type snapshot struct {
	format Format
	files  []file   // in the order they apply
	digest [32]byte // of the format, names and up parts

	prefixes [][32]byte // prefixes[i]: the digest of the first i+1 files alone
	ordered  int        // leading files that are versioned (Flyway's repeatables follow)
}

type file struct {
	name    string // relative to the directory
	version uint   // golang-migrate's version
	data    []byte // the whole file (golang-migrate) or its up part as written
	up      upPart // the up part's statements (every format but golang-migrate)
}

// Open returns the migrations at path: a directory whose layout is detected from its
// contents (see OpenFormat), or one SQL file applied as a script (a schema dump). A
// directory without migrations is fine: its template is an empty database.
func Open(path string) (*Dir, error) { return OpenFormat(path, "") }

// OpenFormat is Open with the layout given: format "" detects it, Dump takes a file.
func OpenFormat(path string, format Format) (*Dir, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("open migrations: %w", err)
	}
	switch {
	case !fi.IsDir() && (format == "" || format == Dump):
		return onDisk(&Dir{fsys: os.DirFS(filepath.Dir(path)), root: ".", only: filepath.Base(path), format: Dump, display: path}, filepath.Dir(path)), nil
	case !fi.IsDir():
		return nil, fmt.Errorf("open migrations %s: format %s wants a directory", path, format)
	case format == Dump:
		return nil, fmt.Errorf("open migrations %s: format %s wants a file, not a directory", path, format)
	}
	return onDisk(&Dir{fsys: os.DirFS(path), root: ".", format: format, display: path}, path), nil
}

// onDisk gives d, whose migrations are in the directory dir on disk, its change guard.
func onDisk(d *Dir, dir string) *Dir {
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	d.osDir, d.cache = dir, &guarded[*snapshot]{}
	runtime.AddCleanup(d, func(w *guarded[*snapshot]) { w.stop() }, d.cache)
	return d
}

// OpenFS returns the migrations directory root inside fsys (e.g. an embed.FS; use "."
// for the top), its layout detected from its contents.
func OpenFS(fsys fs.FS, root string) (*Dir, error) {
	if _, err := fs.ReadDir(fsys, root); err != nil {
		return nil, fmt.Errorf("open migrations directory %s: %w", root, err)
	}
	return &Dir{fsys: fsys, root: root, display: root}, nil
}

// String names the directory as it was given.
func (d *Dir) String() string { return d.display }

// Hash returns the hex SHA-256 of the layout, the up migrations' relative names and
// up parts, the upstream's major version and the catalog schema version. Down files
// and sections, and files the layout does not recognise, are ignored, as the tool
// ignores them when migrating up. The contents are read again only when a file's
// name, size or mtime changed since the last call, and on Linux the directory is only
// listed again when the kernel reported a change in it (guarded).
func (d *Dir) Hash(ctx context.Context, serverMajor, catalogVersion int) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	snap, err := d.current()
	if err != nil {
		return "", err
	}
	sum := finishHash(snap.digest, serverMajor, catalogVersion)
	d.byHash.put(sum, hashed{snap: snap, major: serverMajor, catalog: catalogVersion})
	return sum, nil
}

// current returns the snapshot of the directory as it is now.
func (d *Dir) current() (*snapshot, error) {
	if d.cache == nil {
		l, err := d.listed()
		return l.val, err
	}
	return d.cache.get([]string{d.osDir}, d.listed)
}

// listed lists the directory and returns its snapshot, read again only when the
// listing changed, with the subdirectories and files it used.
func (d *Dir) listed() (listed[*snapshot], error) {
	entries, key, err := d.list()
	if err != nil {
		return listed[*snapshot]{}, fmt.Errorf("list migrations in %s: %w", d.display, err)
	}
	d.mu.Lock()
	snap := d.snap
	if d.listKey != key {
		snap = nil
	}
	d.mu.Unlock()
	if snap == nil {
		if snap, err = d.read(entries); err != nil {
			return listed[*snapshot]{}, err
		}
		d.mu.Lock()
		d.listKey, d.snap = key, snap
		d.mu.Unlock()
	}
	l := listed[*snapshot]{val: snap}
	if d.osDir != "" {
		for _, f := range entries.files {
			l.names = append(l.names, filepath.Join(d.osDir, filepath.FromSlash(f)))
		}
		for _, sub := range entries.subdirs {
			dir := filepath.Join(d.osDir, filepath.FromSlash(sub))
			l.dirs = append(l.dirs, dir)
			l.names = append(l.names, dir, filepath.Join(dir, "migration.sql"))
		}
	}
	return l, nil
}

func (d *Dir) snapshot(hash string) (*snapshot, error) {
	if h, ok := d.byHash.get(hash); ok {
		return h.snap, nil
	}
	return nil, fmt.Errorf("migrate %s to %.12s: %w", d.display, hash, ErrUnknownHash)
}

// list returns what the directory holds and a key that changes whenever a file's
// name, size or mtime does.
func (d *Dir) list() (listing, string, error) {
	var l listing
	var paths []string
	if d.only != "" {
		l.files, paths = []string{d.only}, []string{d.only}
	} else {
		var err error
		if l, err = readListing(d.fsys, d.root); err != nil {
			return listing{}, "", err
		}
		paths = append(paths, l.files...)
		for _, sub := range l.subdirs {
			paths = append(paths, path.Join(sub, "migration.sql"))
		}
	}
	var key strings.Builder
	for _, p := range paths {
		fi, err := fs.Stat(d.fsys, path.Join(d.root, p))
		if err != nil {
			return listing{}, "", err
		}
		key.WriteString(p)
		key.WriteByte(0)
		key.WriteString(strconv.FormatInt(fi.Size(), 10))
		key.WriteByte(0)
		key.WriteString(strconv.FormatInt(fi.ModTime().UnixNano(), 10))
		key.WriteByte('\n')
	}
	return l, key.String(), nil
}

// read detects the layout (unless it was given), reads the migrations it selects and
// digests their names and up parts.
func (d *Dir) read(l listing) (*snapshot, error) {
	readFile := func(name string) ([]byte, error) {
		data, err := fs.ReadFile(d.fsys, path.Join(d.root, name))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", d.pathOf(name), err)
		}
		return data, nil
	}
	format := d.format
	if format == "" {
		var err error
		if format, err = detect(l, readFile, d.display); err != nil {
			return nil, err
		}
	}
	var entries []entry
	if format == Dump {
		entries = []entry{{name: d.only}}
	} else {
		var err error
		if entries, err = selectFiles(format, l, d.display); err != nil {
			return nil, err
		}
	}
	s := &snapshot{format: format, files: make([]file, 0, len(entries))}
	h := sha256.New()
	h.Write([]byte(format + "\x00"))
	for _, e := range entries {
		data, err := readFile(e.name)
		if err != nil {
			return nil, err
		}
		f := file{name: e.name, version: e.version, data: data}
		if format != GolangMigrate {
			if f.up, err = parseUp(format, e.name, data); err != nil {
				return nil, fmt.Errorf("migrations in %s: %w", d.display, err)
			}
			f.data = f.up.body
		}
		s.files = append(s.files, f)
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(f.name))))
		h.Write([]byte(f.name))
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(f.data))))
		h.Write(f.data)
		if f.up.noTx {
			h.Write([]byte{1})
		}
		var prefix [32]byte
		copy(prefix[:], h.Sum(nil))
		s.prefixes = append(s.prefixes, prefix)
		if format != Flyway || !flywayRepRE.MatchString(e.name) {
			s.ordered++
		}
	}
	copy(s.digest[:], h.Sum(nil))
	return s, nil
}

// pathOf names a file of the directory in messages.
func (d *Dir) pathOf(name string) string {
	if d.only != "" {
		return d.display
	}
	return path.Join(d.display, name)
}

// Describe says how the template is built, for SHOW TEMPLATES and the build log:
// the layout, the directory or file and how many migrations it held when last hashed.
func (d *Dir) Describe() string {
	d.mu.Lock()
	snap := d.snap
	d.mu.Unlock()
	format, n := d.format, 0
	if snap != nil {
		format, n = snap.format, len(snap.files)
	}
	switch {
	case format == "":
		return "migrations " + d.display
	case d.label != "":
		return d.label + " " + d.display
	case d.only != "":
		return fmt.Sprintf("%s %s", format, d.display)
	}
	return fmt.Sprintf("%s %s (%d files)", format, d.display, n)
}

// fileFor returns the file of the given version.
func (s *snapshot) fileFor(version uint) (file, bool) {
	for _, f := range s.files {
		if f.version == version {
			return f, true
		}
	}
	return file{}, false
}
