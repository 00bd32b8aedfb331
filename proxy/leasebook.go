package proxy

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// leaseBook is what the proxy knows of the leases it holds and that the provider
// cannot: the session key, the connections on each lease and their client addresses.
// SHOW LEASES joins it to the provider's rows by clone.
type leaseBook struct {
	mu sync.Mutex
	m  map[string]*bookEntry // by clone
}

type bookEntry struct {
	req     LeaseRequest
	since   time.Time
	clients map[*clientConn]string // open connections on the lease → client address
}

func newLeaseBook() *leaseBook { return &leaseBook{m: map[string]*bookEntry{}} }

// add records a lease the provider just handed out.
func (b *leaseBook) add(clone string, req LeaseRequest) {
	b.mu.Lock()
	b.m[clone] = &bookEntry{req: req, since: time.Now(), clients: map[*clientConn]string{}}
	b.mu.Unlock()
}

// remove forgets a lease given back.
func (b *leaseBook) remove(clone string) {
	b.mu.Lock()
	delete(b.m, clone)
	b.mu.Unlock()
}

// attach records that cc is on the lease of clone; detach that it left.
func (b *leaseBook) attach(clone string, cc *clientConn) {
	b.mu.Lock()
	if e := b.m[clone]; e != nil {
		e.clients[cc] = cc.raw.RemoteAddr().String()
	}
	b.mu.Unlock()
}

func (b *leaseBook) detach(clone string, cc *clientConn) {
	b.mu.Lock()
	if e := b.m[clone]; e != nil {
		delete(e.clients, cc)
	}
	b.mu.Unlock()
}

// leaseColumns are the columns join adds to SHOW LEASES.
var leaseColumns = []string{"session_key", "connections", "clients"}

// join appends the proxy's columns to the provider's SHOW LEASES rows, matched by
// their "database" column; leases of other proxies get empty values.
func (b *leaseBook) join(columns []string, rows [][]string) ([]string, [][]string) {
	col := slices.Index(columns, "database")
	if col < 0 {
		return columns, rows
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([][]string, len(rows))
	for i, row := range rows {
		extra := []string{"", "", ""}
		if e := b.m[row[col]]; e != nil {
			addrs := make([]string, 0, len(e.clients))
			for _, a := range e.clients {
				addrs = append(addrs, a)
			}
			slices.Sort(addrs)
			extra = []string{e.req.Session, strconv.Itoa(len(e.clients)), strings.Join(addrs, " ")}
		}
		out[i] = append(slices.Clone(row), extra...)
	}
	return append(slices.Clone(columns), leaseColumns...), out
}
