package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// EnvURL names the proxy: a postgres:// URL whose database selects the template.
// `pgtestproxy run` sets it.
const EnvURL = "PGTESTPROXY_URL"

// DefaultURL is used when EnvURL is not set: `pgtestproxy serve` with its defaults.
const DefaultURL = "postgres://pgtestproxy@127.0.0.1:6543/test?sslmode=disable"

// Lease modes (README, "Choosing the mode").
const (
	modeDB = "db"
	modeTx = "tx"
)

// connectTimeout bounds the first connection: the proxy answers at once and hands out
// a warm clone, or waits for one (its --acquire-timeout, 30 s by default).
const connectTimeout = time.Minute

// NewDB returns a database/sql handle (pgx's driver) on a db-mode lease for t: a
// fresh clone of the template, shared by every connection t opens. It is closed when
// t ends.
func NewDB(t testing.TB) *sql.DB {
	t.Helper()
	return newDB(t, modeDB)
}

// NewTx is NewDB in tx mode: t's connections share one transaction on a clean clone,
// which the proxy rolls back when the lease ends. See the README's FAQ for what tx mode cannot
// do (statements that cannot run in a transaction block; now() is the lease's start).
func NewTx(t testing.TB) *sql.DB {
	t.Helper()
	return newDB(t, modeTx)
}

// NewPool returns a pgxpool on a db-mode lease for t, closed when t ends.
func NewPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return newPool(t, modeDB)
}

// NewTxPool is NewPool in tx mode.
func NewTxPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return newPool(t, modeTx)
}

// ConnString returns the URL of t's lease in mode ("db" or "tx"), for a driver of
// your own: the proxy's URL with the runtime parameters mode and session (pgx and
// lib/pq send unknown URL parameters as runtime parameters; README, "Choosing the mode").
func ConnString(t testing.TB, mode string) string {
	t.Helper()
	u, err := connString(proxyURL(), mode, sessionKey(t))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return u
}

func newDB(t testing.TB, mode string) *sql.DB {
	t.Helper()
	u := ConnString(t, mode)
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	db, err := openDB(ctx, u)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func newPool(t testing.TB, mode string) *pgxpool.Pool {
	t.Helper()
	u := ConnString(t, mode)
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	pool, err := openPool(ctx, u)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// openDB opens a database/sql handle and makes sure the proxy answers.
func openDB(ctx context.Context, u string) (*sql.DB, error) {
	db, err := sql.Open("pgx", u)
	if err != nil {
		return nil, err
	}
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, explain(u, err)
	}
	return db, nil
}

// openPool opens a pgxpool and makes sure the proxy answers.
func openPool(ctx context.Context, u string) (*pgxpool.Pool, error) {
	pool, err := pgxpool.New(ctx, u)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, explain(u, err)
	}
	return pool, nil
}

// explain turns a failed first connection into advice: the proxy's own error when it
// answered, else how to start one.
func explain(u string, err error) error {
	addr := u
	if pu, perr := url.Parse(u); perr == nil {
		addr = pu.Host
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return fmt.Errorf("the proxy at %s refused the connection: %w", addr, err)
	}
	where := EnvURL + " is not set, so the default " + DefaultURL + " was used"
	if os.Getenv(EnvURL) != "" {
		where = EnvURL + " names it"
	}
	return fmt.Errorf("no pgtestproxy answers at %s (%s): %w\n"+
		"Start one and run the tests under it:\n"+
		"    pgtestproxy run --migrations ./migrations -- go test ./...\n"+
		"or keep one running in another terminal:\n"+
		"    pgtestproxy serve --migrations ./migrations", addr, where, err)
}

// proxyURL is the proxy's URL from the environment, or DefaultURL.
func proxyURL() string {
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	return DefaultURL
}

// connString adds the lease's mode and session key to the proxy's URL.
func connString(base, mode, session string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("%s=%q is not a postgres:// URL", EnvURL, base)
	}
	q := u.Query()
	q.Set("mode", mode)
	q.Set("session", session)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// sessions holds each live test's session key.
var sessions struct {
	sync.Mutex
	keys  map[testing.TB]string
	count int
}

// processNonce tells this process's keys from another's that runs the same tests
// against the same proxy.
var processNonce = func() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

// sessionKey returns t's session key: its name, made unique per process and per run of
// the test (go test -count=2 runs a name twice), the same for every call during t.
func sessionKey(t testing.TB) string {
	sessions.Lock()
	defer sessions.Unlock()
	if k, ok := sessions.keys[t]; ok {
		return k
	}
	if sessions.keys == nil {
		sessions.keys = map[testing.TB]string{}
	}
	sessions.count++
	k := t.Name() + "#" + processNonce + "." + strconv.Itoa(sessions.count)
	sessions.keys[t] = k
	// Registered before the handles' own cleanups, so it runs after them.
	t.Cleanup(func() {
		sessions.Lock()
		delete(sessions.keys, t)
		sessions.Unlock()
	})
	return k
}
