package integration

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/lib/pq"
)

// The Go drivers of the suite: pgx (a connection, and pgxpool), database/sql with pgx's
// stdlib, and lib/pq. pgx users select the mode with runtime parameters in the URL
// (?mode=tx&session=KEY, README "Choosing the mode"); lib/pq users, like libpq's, with
// ?options=-c pgtestproxy.mode=tx.

// goDrivers are the Go drivers by matrix name.
func goDrivers(baseURL string) map[string]suiteDriver {
	return map[string]suiteDriver{
		"pgx":              pgxDriver{base: baseURL},
		"pgxpool":          pgxDriver{base: baseURL, pool: true},
		"database-sql-pgx": sqlDriver{base: baseURL, name: "pgx"},
		"lib-pq":           sqlDriver{base: baseURL, name: "postgres"},
	}
}

// goDriverNames lists goDrivers in matrix order.
var goDriverNames = []string{"pgx", "pgxpool", "database-sql-pgx", "lib-pq"}

// withQuery returns base with the query parameters added.
func withQuery(base string, add url.Values) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	q := u.Query()
	for k, vs := range add {
		q[k] = vs
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// pgxURL is how a pgx user selects mode, session and time zone: runtime parameters
// in the URL.
func pgxURL(base string, o connOptions) string {
	q := url.Values{"mode": {o.mode}}
	if o.session != "" {
		q.Set("session", o.session)
	}
	if o.timezone != "" {
		q.Set("timezone", o.timezone)
	}
	return withQuery(base, q)
}

// libpqOptions is the libpq-style `options` value for o.
func libpqOptions(o connOptions) string {
	opts := []string{"-c pgtestproxy.mode=" + o.mode}
	if o.session != "" {
		opts = append(opts, "-c pgtestproxy.session="+o.session)
	}
	if o.timezone != "" {
		opts = append(opts, "-c TimeZone="+o.timezone)
	}
	return strings.Join(opts, " ")
}

// pgxConfig parses a pgx URL and makes context cancellation send a CancelRequest
// (pgx's default closes the connection instead), as pgx documents for users who want
// their queries cancelled.
func pgxConfig(u string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(u)
	if err != nil {
		return nil, err
	}
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 5 * time.Second}
	}
	return cfg, nil
}

func pgxErrorInfo(err error) (string, string, bool) {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code, pgErr.ConstraintName, true
	}
	return "", "", false
}

// --- pgx: a connection, or pgxpool ---------------------------------------------------

type pgxDriver struct {
	base string
	pool bool
}

func (pgxDriver) caps() []string { return []string{"copy_in", "copy_out", "cancel"} }

func (d pgxDriver) open(ctx context.Context, o connOptions) (suiteConn, error) {
	c := &pgxConn{url: pgxURL(d.base, o), usePool: d.pool}
	if d.pool {
		// A case's plain connection is a pool of one, so it keeps one session; a
		// pool connection of the case is a pool of four.
		c.maxConns = 1
		if o.pool {
			c.maxConns = 4
		}
	}
	return c, c.connect(ctx)
}

// pgxQuerier is what pgx.Conn, pgxpool.Pool and pgx.Tx have in common.
type pgxQuerier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error)
}

type pgxConn struct {
	url      string
	usePool  bool
	maxConns int32
	conn     *pgx.Conn
	pool     *pgxpool.Pool
	tx       pgx.Tx
}

func (c *pgxConn) connect(ctx context.Context) error {
	cfg, err := pgxConfig(c.url)
	if err != nil {
		return err
	}
	if !c.usePool {
		c.conn, err = pgx.ConnectConfig(ctx, cfg)
		return err
	}
	pcfg, err := pgxpool.ParseConfig("")
	if err != nil {
		return err
	}
	pcfg.ConnConfig = cfg
	pcfg.MaxConns = c.maxConns
	c.pool, err = pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return err
	}
	return c.pool.Ping(ctx)
}

func (c *pgxConn) q() pgxQuerier {
	switch {
	case c.tx != nil:
		return c.tx
	case c.pool != nil:
		return c.pool
	}
	return c.conn
}

func pgxRows(rows pgx.Rows, err error) ([][]value, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]value
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, err
		}
		row := make([]value, len(vals))
		for i, v := range vals {
			row[i] = cellOf(v)
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

func (c *pgxConn) query(ctx context.Context, sql string, params []value) ([][]value, error) {
	return pgxRows(c.q().Query(ctx, sql, goValues(params)...))
}

func (c *pgxConn) begin(ctx context.Context, isolation string) error {
	opts := pgx.TxOptions{}
	if isolation != "" {
		opts.IsoLevel = pgx.TxIsoLevel(isolation)
	}
	var err error
	if c.pool != nil {
		c.tx, err = c.pool.BeginTx(ctx, opts)
	} else {
		c.tx, err = c.conn.BeginTx(ctx, opts)
	}
	return err
}

func (c *pgxConn) commit(ctx context.Context) error {
	tx := c.tx
	c.tx = nil
	return tx.Commit(ctx)
}

func (c *pgxConn) rollback(ctx context.Context) error {
	tx := c.tx
	c.tx = nil
	return tx.Rollback(ctx)
}

// withConn runs f on one connection: the connection, or one acquired from the pool.
func (c *pgxConn) withConn(ctx context.Context, f func(*pgx.Conn) error) error {
	if c.pool == nil {
		return f(c.conn)
	}
	pc, err := c.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer pc.Release()
	return f(pc.Conn())
}

func (c *pgxConn) prepare(ctx context.Context, name, sql string) error {
	return c.withConn(ctx, func(conn *pgx.Conn) error {
		_, err := conn.Prepare(ctx, name, sql)
		return err
	})
}

func (c *pgxConn) execute(ctx context.Context, name string, params []value) ([][]value, error) {
	return c.query(ctx, name, params) // pgx runs the prepared statement of that name
}

func (c *pgxConn) copyIn(ctx context.Context, table string, columns []string, data [][]value) error {
	rows := make([][]any, len(data))
	for i, r := range data {
		rows[i] = goValues(r)
	}
	_, err := c.q().CopyFrom(ctx, pgx.Identifier{table}, columns, pgx.CopyFromRows(rows))
	return err
}

func (c *pgxConn) copyOut(ctx context.Context, sql string) ([][]value, error) {
	var buf bytes.Buffer
	err := c.withConn(ctx, func(conn *pgx.Conn) error {
		_, err := conn.PgConn().CopyTo(ctx, &buf, sql)
		return err
	})
	if err != nil {
		return nil, err
	}
	return parseCopyText(buf.String()), nil
}

// batch sends the statements as one pgx.Batch: one pipeline up to one Sync.
func (c *pgxConn) batch(ctx context.Context, statements []string) error {
	b := &pgx.Batch{}
	for _, s := range statements {
		b.Queue(s)
	}
	br := c.q().SendBatch(ctx, b)
	var first error
	for range statements {
		if _, err := br.Exec(); err != nil && first == nil {
			first = err
		}
	}
	if err := br.Close(); err != nil && first == nil {
		first = err
	}
	return first
}

// cancel runs sql under a context that ends after the delay: pgx then sends a
// CancelRequest (pgxConfig).
func (c *pgxConn) cancel(ctx context.Context, sql string, after time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, after)
	defer cancel()
	_, err := c.q().Exec(cctx, sql)
	return err
}

func (c *pgxConn) parallel(ctx context.Context, n int, sql string) ([][][]value, error) {
	if c.pool == nil {
		return inTurn(ctx, c, n, sql)
	}
	return atOnce(n, func(int) ([][]value, error) { return pgxRows(c.pool.Query(ctx, sql)) })
}

// reconnect drops the connections: the pool's (pgxpool.Reset, the pool dials again
// on demand), or the connection, dialled again with the same URL.
func (c *pgxConn) reconnect(ctx context.Context) error {
	if c.pool != nil {
		c.pool.Reset()
		return nil
	}
	if err := c.conn.Close(ctx); err != nil {
		return err
	}
	return c.connect(ctx)
}

func (c *pgxConn) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c.tx != nil { // a case that failed inside a transaction
		_ = c.tx.Rollback(ctx)
		c.tx = nil
	}
	if c.pool != nil {
		c.pool.Close() // waits for acquired connections, such as a transaction's
		return nil
	}
	return c.conn.Close(ctx)
}

func (c *pgxConn) errorInfo(err error) (string, string, bool) { return pgxErrorInfo(err) }

// --- database/sql: pgx's stdlib and lib/pq -----------------------------------------

type sqlDriver struct {
	base string
	name string // "pgx" or "postgres"
}

func (d sqlDriver) caps() []string {
	if d.name == "postgres" {
		return []string{"copy_in", "cancel"} // lib/pq: "COPY TO is not supported"
	}
	return []string{"copy_in", "copy_out", "cancel"}
}

// open returns a *sql.DB: a case's plain connection is a DB of one connection (so it
// keeps one session, and reconnects after a broken one as database/sql does), a pool
// connection is a DB of four.
func (d sqlDriver) open(ctx context.Context, o connOptions) (suiteConn, error) {
	var db *sql.DB
	if d.name == "pgx" {
		cfg, err := pgxConfig(pgxURL(d.base, o))
		if err != nil {
			return nil, err
		}
		db = stdlib.OpenDB(*cfg)
	} else {
		var err error
		db, err = sql.Open("postgres", withQuery(d.base, url.Values{"options": {libpqOptions(o)}}))
		if err != nil {
			return nil, err
		}
	}
	size := 1
	if o.pool {
		size = 4
	}
	db.SetMaxOpenConns(size)
	db.SetMaxIdleConns(size)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return &sqlConn{db: db, driver: d.name, size: size, stmts: map[string]*sql.Stmt{}}, nil
}

// sqlQuerier is what *sql.DB and *sql.Tx have in common.
type sqlQuerier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

type sqlConn struct {
	db     *sql.DB
	driver string
	size   int // connections the DB may open
	tx     *sql.Tx
	stmts  map[string]*sql.Stmt
}

func (c *sqlConn) q() sqlQuerier {
	if c.tx != nil {
		return c.tx
	}
	return c.db
}

func sqlRows(rows *sql.Rows, err error) ([][]value, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out [][]value
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make([]value, len(vals))
		for i, v := range vals {
			row[i] = cellOf(v)
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

func (c *sqlConn) query(ctx context.Context, sql string, params []value) ([][]value, error) {
	return sqlRows(c.q().QueryContext(ctx, sql, goValues(params)...))
}

var sqlIsolation = map[string]sql.IsolationLevel{
	"":                 sql.LevelDefault,
	"serializable":     sql.LevelSerializable,
	"repeatable read":  sql.LevelRepeatableRead,
	"read committed":   sql.LevelReadCommitted,
	"read uncommitted": sql.LevelReadUncommitted,
}

func (c *sqlConn) begin(ctx context.Context, isolation string) error {
	var err error
	// database/sql rolls a transaction back when its context ends (lib/pq cancels
	// it), and this one outlives the step that begins it.
	c.tx, err = c.db.BeginTx(context.WithoutCancel(ctx), &sql.TxOptions{Isolation: sqlIsolation[isolation]})
	return err
}

func (c *sqlConn) commit(context.Context) error {
	tx := c.tx
	c.tx = nil
	return tx.Commit()
}

func (c *sqlConn) rollback(context.Context) error {
	tx := c.tx
	c.tx = nil
	return tx.Rollback()
}

func (c *sqlConn) prepare(ctx context.Context, name, sql string) error {
	st, err := c.db.PrepareContext(ctx, sql)
	if err != nil {
		return err
	}
	c.stmts[name] = st
	return nil
}

func (c *sqlConn) execute(ctx context.Context, name string, params []value) ([][]value, error) {
	st := c.stmts[name]
	if st == nil {
		return nil, fmt.Errorf("no prepared statement %q", name)
	}
	if c.tx != nil {
		st = c.tx.StmtContext(ctx, st)
	}
	return sqlRows(st.QueryContext(ctx, goValues(params)...))
}

// copyIn uses each driver's COPY: pgx's CopyFrom through database/sql's Conn.Raw,
// lib/pq's COPY statement prepared in a transaction.
func (c *sqlConn) copyIn(ctx context.Context, table string, columns []string, data [][]value) error {
	if c.driver == "pgx" {
		return c.raw(ctx, func(conn *pgx.Conn) error {
			rows := make([][]any, len(data))
			for i, r := range data {
				rows[i] = goValues(r)
			}
			_, err := conn.CopyFrom(ctx, pgx.Identifier{table}, columns, pgx.CopyFromRows(rows))
			return err
		})
	}
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	err = func() error {
		st, err := tx.PrepareContext(ctx, copyFromStdin(table, columns))
		if err != nil {
			return err
		}
		for _, r := range data {
			if _, err := st.ExecContext(ctx, goValues(r)...); err != nil {
				st.Close()
				return err
			}
		}
		if _, err := st.ExecContext(ctx); err != nil {
			st.Close()
			return err
		}
		return st.Close()
	}()
	if err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (c *sqlConn) copyOut(ctx context.Context, sql string) ([][]value, error) {
	var buf bytes.Buffer
	err := c.raw(ctx, func(conn *pgx.Conn) error {
		_, err := conn.PgConn().CopyTo(ctx, &buf, sql)
		return err
	})
	if err != nil {
		return nil, err
	}
	return parseCopyText(buf.String()), nil
}

// raw runs f on the pgx connection under database/sql, as pgx's stdlib documents.
func (c *sqlConn) raw(ctx context.Context, f func(*pgx.Conn) error) error {
	conn, err := c.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error { return f(dc.(*stdlib.Conn).Conn()) })
}

// batch sends the statements as one simple-protocol query string (database/sql has
// no batches; Exec without arguments is a simple Query in both drivers).
func (c *sqlConn) batch(ctx context.Context, statements []string) error {
	_, err := c.q().ExecContext(ctx, strings.Join(statements, "; "))
	return err
}

// cancel runs sql under a context that ends after the delay. pgx's stdlib sends a
// CancelRequest (pgxConfig); lib/pq sends one and then discards the connection, so
// database/sql dials a new one for the next statement.
func (c *sqlConn) cancel(ctx context.Context, sql string, after time.Duration) error {
	cctx, cancel := context.WithTimeout(ctx, after)
	defer cancel()
	_, err := c.q().ExecContext(cctx, sql)
	return err
}

func (c *sqlConn) parallel(ctx context.Context, n int, sql string) ([][][]value, error) {
	if c.size == 1 {
		return inTurn(ctx, c, n, sql)
	}
	return atOnce(n, func(int) ([][]value, error) { return sqlRows(c.db.QueryContext(ctx, sql)) })
}

// reconnect closes the pool's idle connections; database/sql dials new ones.
func (c *sqlConn) reconnect(context.Context) error {
	c.db.SetMaxIdleConns(0)
	c.db.SetMaxIdleConns(c.size)
	return nil
}

func (c *sqlConn) close() error {
	if c.tx != nil { // a case that failed inside a transaction
		_ = c.tx.Rollback()
		c.tx = nil
	}
	for _, st := range c.stmts {
		st.Close()
	}
	return c.db.Close()
}

func (c *sqlConn) errorInfo(err error) (string, string, bool) {
	if c.driver == "postgres" {
		if e := pq.As(err); e != nil {
			return string(e.Code), e.Constraint, true
		}
		return "", "", false
	}
	return pgxErrorInfo(err)
}

// --- helpers ------------------------------------------------------------------------

// inTurn runs sql n times on one connection.
func inTurn(ctx context.Context, c suiteConn, n int, sql string) ([][][]value, error) {
	out := make([][][]value, n)
	for i := range out {
		rows, err := c.query(ctx, sql, nil)
		if err != nil {
			return nil, err
		}
		out[i] = rows
	}
	return out, nil
}

// atOnce runs f n times concurrently and returns every result, or the first error.
func atOnce(n int, f func(i int) ([][]value, error)) ([][][]value, error) {
	out := make([][][]value, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { out[i], errs[i] = f(i) })
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// copyFromStdin is the COPY statement lib/pq's CopyIn builds: lib/pq runs a prepared
// COPY … FROM STDIN as a copy-in whose rows are the statement's executions.
func copyFromStdin(table string, columns []string) string {
	cols := make([]string, len(columns))
	for i, c := range columns {
		cols[i] = pq.QuoteIdentifier(c)
	}
	return "COPY " + pq.QuoteIdentifier(table) + " (" + strings.Join(cols, ", ") + ") FROM STDIN"
}
