#!/usr/bin/python3
"""Runs pgtestproxy's behavioural suite (integration/suite/cases.json) through psycopg2.

A psycopg2 user selects the lease mode and the session key in libpq's `options`:

    psycopg2.connect(os.environ["DATABASE_URL"],
                     options="-c pgtestproxy.mode=tx -c pgtestproxy.session=KEY")

Environment: DATABASE_URL (exported by `pgtestproxy run`), PGTESTPROXY_SUITE_MODE (db or
tx, default db), PGTESTPROXY_SUITE_CASES (default: ../suite/cases.json beside this file),
PGTESTPROXY_SUITE_RUN (prefix of session keys, default random).

Prints "PASS name", "FAIL name: why" or "SKIP name: why" per case, then a summary line,
and exits 1 when a case failed. Needs Debian's python3-psycopg2 (run it with
/usr/bin/python3).
"""

import io
import json
import os
import sys
import threading
import time
import uuid
from datetime import datetime

import psycopg2
import psycopg2.errors
import psycopg2.pool

MODE = os.environ.get("PGTESTPROXY_SUITE_MODE") or "db"
CASES = os.environ.get("PGTESTPROXY_SUITE_CASES") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "suite", "cases.json")
RUN = os.environ.get("PGTESTPROXY_SUITE_RUN") or "py" + uuid.uuid4().hex[:8]
CAPS = {"copy_in", "copy_out", "cancel"}
POOL_SIZE = 4


class StepError(Exception):
    """A step did not give what the case expects."""


# --- values -------------------------------------------------------------------------

def decode(v):
    """A parameter or expected cell from the suite: None, str or aware datetime."""
    if v is None or isinstance(v, str):
        return v
    if "repeat" in v:
        return v["repeat"] * v["times"]
    if "instant" in v:
        return datetime.fromisoformat(v["instant"].replace("Z", "+00:00"))
    raise StepError("unknown value %r" % (v,))


def show(v):
    if isinstance(v, str) and len(v) > 80:
        return "%r… (%d chars)" % (v[:40], len(v))
    return repr(v)


def same(want, got):
    if isinstance(want, datetime):
        return isinstance(got, datetime) and got.tzinfo is not None and want == got
    return want == got


def check_rows(want, got):
    want = [[decode(c) for c in r] for r in want]
    if len(want) != len(got):
        raise StepError("got %d rows, want %d: %s" % (len(got), len(want), [[show(c) for c in r] for r in got[:5]]))
    for i, (w, g) in enumerate(zip(want, got)):
        if len(w) != len(g):
            raise StepError("row %d has %d columns, want %d" % (i, len(g), len(w)))
        for j, (wc, gc) in enumerate(zip(w, g)):
            if not same(wc, gc):
                raise StepError("row %d column %d is %s, want %s" % (i, j, show(gc), show(wc)))


def cell(v):
    if v is None or isinstance(v, (str, datetime)):
        return v
    return str(v)


def to_pyformat(sql, n):
    """$1…$n become psycopg2's %(pN)s placeholders."""
    sql = sql.replace("%", "%%")
    for i in range(n, 0, -1):
        sql = sql.replace("$%d" % i, "%%(p%d)s" % i)
    return sql


def run_sql(conn, sql, params):
    with conn.cursor() as cur:
        if params:
            cur.execute(to_pyformat(sql, len(params)), {"p%d" % (i + 1): decode(p) for i, p in enumerate(params)})
        else:
            cur.execute(sql)
        if cur.description is None:
            return []
        return [[cell(c) for c in row] for row in cur.fetchall()]


def parse_copy(text):
    rows = []
    for line in text.split("\n"):
        if line == "":
            continue
        rows.append([None if f == "\\N" else f for f in line.split("\t")])
    return rows


# --- connections ----------------------------------------------------------------------

def options_for(spec, session):
    opts = ["-c pgtestproxy.mode=" + MODE]
    if session:
        opts.append("-c pgtestproxy.session=" + session)
    if spec.get("timezone"):
        opts.append("-c TimeZone=" + spec["timezone"])
    return " ".join(opts)


class Conn:
    """One of a case's connections: a psycopg2 connection in autocommit mode, or a
    ThreadedConnectionPool of them when the case asks for a pool."""

    def __init__(self, spec, session):
        self.options = options_for(spec, session)
        self.pool = None
        self.conn = None
        self.seen = []  # the pool's connections, to break them on reconnect
        self.lock = threading.Lock()
        if spec.get("pool"):
            self.pool = psycopg2.pool.ThreadedConnectionPool(1, POOL_SIZE, os.environ["DATABASE_URL"], options=self.options)
        else:
            self.conn = self.connect()

    def connect(self):
        c = psycopg2.connect(os.environ["DATABASE_URL"], options=self.options)
        c.autocommit = True
        return c

    def get(self):
        if self.conn is not None:
            return self.conn
        c = self.pool.getconn()
        while c.closed:  # the psycopg2 pool idiom: replace connections that went away
            self.pool.putconn(c, close=True)
            c = self.pool.getconn()
        c.autocommit = True
        with self.lock:
            if c not in self.seen:
                self.seen.append(c)
        return c

    def put(self, c):
        if self.pool is not None:
            self.pool.putconn(c)

    def query(self, sql, params=None):
        c = self.get()
        try:
            return run_sql(c, sql, params)
        finally:
            self.put(c)

    def begin(self, isolation):
        # psycopg2 sends BEGIN (with the isolation level) before the next statement.
        self.conn.set_session(isolation_level=(isolation or "DEFAULT").upper(), autocommit=False)

    def end(self, commit):
        try:
            if commit:
                self.conn.commit()
            else:
                self.conn.rollback()
        finally:
            self.conn.set_session(isolation_level="DEFAULT", autocommit=True)

    def prepare(self, name, sql):
        self.query("PREPARE %s AS %s" % (name, sql))

    def execute(self, name, params):
        if not params:
            return self.query("EXECUTE " + name)
        refs = ", ".join("$%d" % (i + 1) for i in range(len(params)))
        return self.query("EXECUTE %s(%s)" % (name, refs), params)

    def copy_in(self, table, columns, data):
        text = "".join("\t".join("\\N" if v is None else v for v in row) + "\n" for row in data)
        with self.conn.cursor() as cur:
            cur.copy_from(io.StringIO(text), table, columns=columns)

    def copy_out(self, sql):
        buf = io.StringIO()
        with self.conn.cursor() as cur:
            cur.copy_expert(sql, buf)
        return parse_copy(buf.getvalue())

    def batch(self, statements):
        # One query string: psycopg2 sends it as one simple Query.
        self.query("; ".join(statements))

    def cancel(self, sql, after_ms):
        # connection.cancel() sends a CancelRequest with the key the proxy issued.
        timer = threading.Timer(after_ms / 1000.0, self.conn.cancel)
        timer.start()
        try:
            self.query(sql)
        finally:
            timer.cancel()

    def parallel(self, n, sql):
        if self.pool is None:
            return [self.query(sql) for _ in range(n)]
        results, errors = [None] * n, []

        def work(i):
            try:
                results[i] = self.query(sql)
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results

    def reconnect(self):
        if self.pool is None:
            self.conn.close()
            self.conn = self.connect()
            return
        # The pool's connections go away under it; get() replaces them.
        with self.lock:
            for c in self.seen:
                c.close()
            self.seen = []

    def close(self):
        if self.pool is not None:
            self.pool.closeall()
        elif not self.conn.closed:
            self.conn.close()


def error_info(e):
    """SQLSTATE and constraint when e is psycopg2's exception class for that SQLSTATE."""
    if not isinstance(e, psycopg2.Error) or not e.pgcode:
        return None
    try:
        cls = psycopg2.errors.lookup(e.pgcode)
    except KeyError:
        cls = psycopg2.DatabaseError
    if not isinstance(e, cls):
        return None
    return e.pgcode, e.diag.constraint_name


# --- cases ----------------------------------------------------------------------------

def run_step(conns, step, saved):
    c = conns[step["conn"]]
    do = step.get("do") or "query"
    rows = None
    error = None
    try:
        if do == "query":
            if step.get("parallel"):
                for r in c.parallel(step["parallel"], step["sql"]):
                    if "rows" in step:
                        check_rows(step["rows"], r)
                return
            rows = c.query(step["sql"], step.get("params"))
        elif do == "begin":
            c.begin(step.get("isolation"))
        elif do == "commit":
            c.end(True)
        elif do == "rollback":
            c.end(False)
        elif do == "prepare":
            c.prepare(step["name"], step["sql"])
        elif do == "execute":
            rows = c.execute(step["name"], step.get("params"))
        elif do == "copy_in":
            c.copy_in(step["table"], step["columns"], step["data"])
        elif do == "copy_out":
            rows = c.copy_out(step["sql"])
        elif do == "batch":
            c.batch(step["statements"])
        elif do == "cancel":
            start = time.monotonic()
            try:
                c.cancel(step["sql"], step.get("after_ms", 0))
            finally:
                if time.monotonic() - start > 10:
                    raise StepError("the cancelled query ran on: the cancel did not reach its backend")
        elif do == "reconnect":
            c.reconnect()
        elif do == "close":
            c.close()
        else:
            raise StepError("unknown step %r" % do)
    except psycopg2.Error as e:
        error = e
    check_outcome(step, rows, error, saved)


def check_outcome(step, rows, error, saved):
    if "error" in step:
        if error is None:
            raise StepError("succeeded, want SQLSTATE %s" % step["error"])
        info = error_info(error)
        if info is None:
            raise StepError("%r (%s) is not psycopg2's exception class for SQLSTATE %s" % (
                str(error).strip(), type(error).__name__, error.pgcode))
        code, constraint = info
        if code != step["error"]:
            raise StepError("SQLSTATE %s (%s), want %s" % (code, str(error).strip(), step["error"]))
        if step.get("constraint") and constraint != step["constraint"]:
            raise StepError("constraint %r, want %r" % (constraint, step["constraint"]))
        return
    if error is not None:
        raise StepError("%s: %s" % (type(error).__name__, str(error).strip()))
    if "rows" in step:
        check_rows(step["rows"], rows)
    if "row_count" in step and len(rows) != step["row_count"]:
        raise StepError("got %d rows, want %d" % (len(rows), step["row_count"]))
    for key in ("save", "same_as", "differs_from"):
        if key in step:
            if len(rows) != 1 or len(rows[0]) != 1 or not isinstance(rows[0][0], str):
                raise StepError("want one text value to compare, got %s" % rows)
            got = rows[0][0]
            if key == "save":
                saved[step[key]] = got
            elif key == "same_as" and got != saved.get(step[key]):
                raise StepError("got %r, want the same as %s (%r)" % (got, step[key], saved.get(step[key])))
            elif key == "differs_from" and got == saved.get(step[key]):
                raise StepError("got %r, want something other than %s" % (got, step[key]))


def run_case(case):
    missing = [n for n in case.get("needs", []) if n not in CAPS]
    if missing:
        return "SKIP", "n/a: psycopg2 runner has no " + ", ".join(missing)
    conns = {}
    saved = {}
    try:
        for i, step in enumerate(case["steps"]):
            if MODE not in step.get("modes", [MODE]):
                continue
            name = step["conn"]
            if name not in conns and step.get("do") != "close":
                spec = case["conns"][name]
                session = "%s-%s-%s" % (RUN, case["name"], spec["session"]) if spec.get("session") else ""
                try:
                    conns[name] = Conn(spec, session)
                except psycopg2.Error as e:
                    raise StepError("step %d: connect %s: %s" % (i, name, str(e).strip()))
            try:
                run_step(conns, step, saved)
            except StepError as e:
                raise StepError("step %d (%s on %s): %s" % (i, describe(step), name, e))
            if step.get("do") == "close":
                conns.pop(name, None)
        return "PASS", ""
    except StepError as e:
        return "FAIL", str(e)
    except Exception as e:  # a runner bug still names its case
        return "FAIL", "%s: %s" % (type(e).__name__, e)
    finally:
        for c in conns.values():
            try:
                c.close()
            except Exception:
                pass


def describe(step):
    do = step.get("do") or "query"
    if step.get("sql"):
        return "%s %r" % (do, step["sql"][:70])
    return do + (" " + step["name"] if step.get("name") else "")


def main():
    with open(CASES) as f:
        cases = json.load(f)["cases"]
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    for case in cases:
        if MODE not in case.get("modes", [MODE]):
            continue
        status, why = run_case(case)
        counts[status] += 1
        line = "%s %s" % (status, case["name"])
        if why:
            first, _, rest = why.partition("\n")
            line += ": " + first
            if rest:
                line += "\n" + "\n".join("  " + l for l in rest.split("\n"))
        print(line, flush=True)
    print("psycopg2 %s (%s mode): %d passed, %d failed, %d skipped" % (
        psycopg2.__version__.split()[0], MODE, counts["PASS"], counts["FAIL"], counts["SKIP"]))
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
