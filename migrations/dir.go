package migrations

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/golang-migrate/migrate/v4/source"
)

// ErrUnknownHash is returned (wrapped) by Migrate for a hash this Dir did not produce,
// or produced so long ago that its snapshot was evicted: call Hash again.
var ErrUnknownHash = errors.New("hash is not a snapshot of this migrations directory")

// keptSnapshots bounds how many hashed snapshots a Dir remembers for Migrate. A caller
// hashes and then migrates straight away, so a handful is plenty even while the files
// are being edited.
const keptSnapshots = 8

// Dir is one golang-migrate directory. Its methods are safe for concurrent use.
type Dir struct {
	fsys    fs.FS
	root    string // directory inside fsys
	display string // how messages name the directory

	mu      sync.Mutex
	listKey string    // (name, size, mtime) listing the cached snapshot was read from
	snap    *snapshot // contents read for listKey
	byHash  map[string]*snapshot
	hashes  []string // byHash keys, oldest first
}

// snapshot is the up files of a directory as read at one moment.
type snapshot struct {
	files  []file   // sorted by version
	digest [32]byte // of the names and contents
}

type file struct {
	name    string
	version uint
	data    []byte
}

// Open returns the migrations directory at path. It fails when path is not a readable
// directory; a directory without migrations is fine (its template is an empty database).
func Open(path string) (*Dir, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("open migrations directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open migrations directory %s: not a directory", path)
	}
	return &Dir{fsys: os.DirFS(path), root: ".", display: path}, nil
}

// OpenFS returns the migrations directory root inside fsys (e.g. an embed.FS; use "."
// for the top).
func OpenFS(fsys fs.FS, root string) (*Dir, error) {
	if _, err := fs.ReadDir(fsys, root); err != nil {
		return nil, fmt.Errorf("open migrations directory %s: %w", root, err)
	}
	return &Dir{fsys: fsys, root: root, display: root}, nil
}

// String names the directory as it was given.
func (d *Dir) String() string { return d.display }

// Hash returns the hex SHA-256 of the up migrations' relative names and contents, the
// upstream's major version and the catalog schema version. Down files and files
// golang-migrate does not recognise are ignored, as golang-migrate ignores them when
// migrating up. The contents are read again only when a file's name, size or mtime
// changed since the last call.
func (d *Dir) Hash(ctx context.Context, serverMajor, catalogVersion int) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	entries, key, err := d.list()
	if err != nil {
		return "", err
	}
	d.mu.Lock()
	snap := d.snap
	if d.listKey != key {
		snap = nil
	}
	d.mu.Unlock()
	if snap == nil {
		if snap, err = d.read(entries); err != nil {
			return "", err
		}
		d.mu.Lock()
		d.listKey, d.snap = key, snap
		d.mu.Unlock()
	}
	h := sha256.New()
	h.Write([]byte("pgtestproxy migrations v1\x00"))
	h.Write(snap.digest[:])
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(serverMajor)))
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(catalogVersion)))
	sum := hex.EncodeToString(h.Sum(nil))
	d.remember(sum, snap)
	return sum, nil
}

// remember keeps snap as the contents behind hash for Migrate.
func (d *Dir) remember(hash string, snap *snapshot) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.byHash == nil {
		d.byHash = make(map[string]*snapshot)
	}
	if _, ok := d.byHash[hash]; ok {
		return
	}
	d.byHash[hash] = snap
	d.hashes = append(d.hashes, hash)
	if len(d.hashes) > keptSnapshots {
		delete(d.byHash, d.hashes[0])
		d.hashes = d.hashes[1:]
	}
}

func (d *Dir) snapshot(hash string) (*snapshot, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.byHash[hash]; s != nil {
		return s, nil
	}
	return nil, fmt.Errorf("migrate %s to %.12s: %w", d.display, hash, ErrUnknownHash)
}

// upEntry is one up migration as listed (not yet read).
type upEntry struct {
	name    string
	version uint
}

// list returns the up migrations sorted by version and a key that changes whenever a
// file's name, size or mtime does.
func (d *Dir) list() ([]upEntry, string, error) {
	dirents, err := fs.ReadDir(d.fsys, d.root)
	if err != nil {
		return nil, "", fmt.Errorf("list migrations in %s: %w", d.display, err)
	}
	var ups []upEntry
	var key strings.Builder
	seen := make(map[uint]string)
	for _, e := range dirents {
		if e.IsDir() {
			continue
		}
		m, err := source.DefaultParse(e.Name())
		if err != nil || m.Direction != source.Up {
			continue
		}
		if other, dup := seen[m.Version]; dup {
			return nil, "", fmt.Errorf("migrations in %s: %s and %s share version %d", d.display, other, e.Name(), m.Version)
		}
		seen[m.Version] = e.Name()
		fi, err := e.Info()
		if err != nil {
			return nil, "", fmt.Errorf("stat migration %s: %w", path.Join(d.display, e.Name()), err)
		}
		ups = append(ups, upEntry{name: e.Name(), version: m.Version})
		key.WriteString(e.Name())
		key.WriteByte(0)
		key.WriteString(strconv.FormatInt(fi.Size(), 10))
		key.WriteByte(0)
		key.WriteString(strconv.FormatInt(fi.ModTime().UnixNano(), 10))
		key.WriteByte('\n')
	}
	sort.Slice(ups, func(i, j int) bool { return ups[i].version < ups[j].version })
	return ups, key.String(), nil
}

// read reads the listed files and digests their names and contents.
func (d *Dir) read(entries []upEntry) (*snapshot, error) {
	s := &snapshot{files: make([]file, 0, len(entries))}
	h := sha256.New()
	for _, e := range entries {
		data, err := fs.ReadFile(d.fsys, path.Join(d.root, e.name))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", path.Join(d.display, e.name), err)
		}
		s.files = append(s.files, file{name: e.name, version: e.version, data: data})
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(e.name))))
		h.Write([]byte(e.name))
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(data))))
		h.Write(data)
	}
	copy(s.digest[:], h.Sum(nil))
	return s, nil
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
