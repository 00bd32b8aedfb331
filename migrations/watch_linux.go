//go:build linux

package migrations

import (
	"encoding/binary"
	"errors"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// The change guard on Linux: one inotify instance for the whole process watches the
// directories of every Dir opened from a path and of every Command's watched paths. A guard is dirty once any event arrived
// for one of its directories; events are read (without blocking) only when a guard is
// asked, so nothing runs in the background.
//
// Only filesystems whose changes the kernel sees happen are trusted (local disks and
// tmpfs): on NFS, FUSE, 9p or virtiofs (a Docker Desktop bind mount) a change made
// elsewhere raises no event, so those directories are listed on every Hash, as they are
// on other systems.

var notify struct {
	once sync.Once
	mu   sync.Mutex
	fd   int // -1: inotify unavailable
	byWD map[int32]map[*guard]struct{}
}

// guard watches the directories of one Dir or Command.
type guard struct {
	wds   []int32
	dirty bool // an event arrived, the queue overflowed, or a watch went
}

const watchMask = unix.IN_MODIFY | unix.IN_ATTRIB | unix.IN_CLOSE_WRITE | unix.IN_CREATE |
	unix.IN_DELETE | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_MOVED_FROM | unix.IN_MOVED_TO

// localFS lists the filesystems (statfs f_type) whose changes raise inotify events.
var localFS = map[int64]bool{
	0xEF53:     true, // ext2/3/4
	0x58465342: true, // xfs
	0x9123683E: true, // btrfs
	0x01021994: true, // tmpfs
	0x794c7630: true, // overlayfs
	0x2FC12FC1: true, // zfs
	0xF2F52010: true, // f2fs
}

// newGuard starts watching dirs; it returns nil when one of them cannot be watched (or
// there are none), and the caller then lists them on every check.
func newGuard(dirs ...string) *guard {
	notify.once.Do(func() {
		fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
		if err != nil {
			fd = -1
		}
		notify.fd, notify.byWD = fd, map[int32]map[*guard]struct{}{}
	})
	if notify.fd < 0 || len(dirs) == 0 {
		return nil
	}
	g := &guard{}
	if !g.addAll(dirs) {
		g.close()
		return nil
	}
	return g
}

// watchable reports whether dir is a real directory (not a symbolic link) on a
// filesystem whose changes raise events.
func watchable(dir string) bool {
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		return false
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false
	}
	return localFS[int64(st.Type)]
}

// addAll watches more directories of the guard's; false when one cannot be.
func (g *guard) addAll(dirs []string) bool {
	for _, dir := range dirs {
		if !watchable(dir) {
			return false
		}
	}
	notify.mu.Lock()
	defer notify.mu.Unlock()
	for _, dir := range dirs {
		wd, err := unix.InotifyAddWatch(notify.fd, dir, watchMask|unix.IN_ONLYDIR|unix.IN_DONT_FOLLOW)
		if err != nil {
			return false
		}
		w := int32(wd)
		if notify.byWD[w] == nil {
			notify.byWD[w] = map[*guard]struct{}{}
		}
		notify.byWD[w][g] = struct{}{}
		g.wds = append(g.wds, w)
	}
	return true
}

// noSymlinks reports whether none of paths is a symbolic link, whose target's changes
// would raise no event in the directory.
func noSymlinks(paths []string) bool {
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode()&os.ModeSymlink != 0 {
			return false
		}
	}
	return true
}

// changed reports whether anything happened in the guard's directories since it was
// made.
func (g *guard) changed() bool {
	notify.mu.Lock()
	defer notify.mu.Unlock()
	drainLocked()
	return g.dirty
}

// drainLocked reads the events queued so far and marks their guards dirty.
func drainLocked() {
	var buf [4096]byte
	for {
		n, err := unix.Read(notify.fd, buf[:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if n <= 0 || err != nil {
			if err != nil && !errors.Is(err, unix.EAGAIN) {
				markAllLocked() // cannot tell what changed: everything might have
			}
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			wd := int32(binary.NativeEndian.Uint32(buf[off:]))
			mask := binary.NativeEndian.Uint32(buf[off+4:])
			nameLen := int(binary.NativeEndian.Uint32(buf[off+12:]))
			off += unix.SizeofInotifyEvent + nameLen
			if mask&unix.IN_Q_OVERFLOW != 0 {
				markAllLocked()
				continue
			}
			for g := range notify.byWD[wd] {
				g.dirty = true
			}
		}
	}
}

func markAllLocked() {
	for _, gs := range notify.byWD {
		for g := range gs {
			g.dirty = true
		}
	}
}

// close stops the guard's watches that no other guard shares.
func (g *guard) close() {
	if g == nil {
		return
	}
	notify.mu.Lock()
	defer notify.mu.Unlock()
	for _, wd := range g.wds {
		gs := notify.byWD[wd]
		delete(gs, g)
		if len(gs) == 0 {
			delete(notify.byWD, wd)
			_, _ = unix.InotifyRmWatch(notify.fd, uint32(wd))
		}
	}
	g.wds = nil
}
