#!/usr/bin/env node
// Runs pgtestproxy's behavioural suite (integration/suite/cases.json) through
// node-postgres (pg) and its pool.
//
// A node-postgres user selects the lease mode and the session key in the `options`
// connection setting:
//
//   new pg.Pool({ connectionString: process.env.DATABASE_URL,
//                 options: '-c pgtestproxy.mode=tx -c pgtestproxy.session=KEY' })
//
// Environment: DATABASE_URL (exported by `pgtestproxy run`), PGTESTPROXY_SUITE_MODE (db
// or tx, default db), PGTESTPROXY_SUITE_CASES (default: ../../suite/cases.json beside
// this file), PGTESTPROXY_SUITE_RUN (prefix of session keys, default random).
//
// Prints "PASS name", "FAIL name: why" or "SKIP name: why" per case, then a summary
// line, and exits 1 when a case failed. Install its modules with `npm ci` here.
'use strict'

const fs = require('fs')
const path = require('path')
const crypto = require('crypto')
const { Readable, Writable } = require('stream')
const { pipeline } = require('stream/promises')
const pg = require('pg')
const { from: copyFrom, to: copyTo } = require('pg-copy-streams')

const MODE = process.env.PGTESTPROXY_SUITE_MODE || 'db'
const CASES = process.env.PGTESTPROXY_SUITE_CASES || path.join(__dirname, '..', '..', 'suite', 'cases.json')
const RUN = process.env.PGTESTPROXY_SUITE_RUN || 'node' + crypto.randomBytes(4).toString('hex')
const CAPS = new Set(['copy_in', 'copy_out', 'cancel'])
const POOL_SIZE = 4

class StepError extends Error {}

// --- values -------------------------------------------------------------------------

// decode turns a parameter or expected cell of the suite into null, a string or a Date.
function decode (v) {
  if (v === null || typeof v === 'string') return v
  if ('repeat' in v) return v.repeat.repeat(v.times)
  if ('instant' in v) return new Date(v.instant)
  throw new StepError('unknown value ' + JSON.stringify(v))
}

function show (v) {
  if (v instanceof Date) return 'Date ' + v.toISOString()
  if (typeof v === 'string' && v.length > 80) return JSON.stringify(v.slice(0, 40)) + `… (${v.length} chars)`
  return JSON.stringify(v)
}

function same (want, got) {
  if (want instanceof Date) return got instanceof Date && got.getTime() === want.getTime()
  return want === got
}

function checkRows (want, got) {
  want = want.map((r) => r.map(decode))
  if (want.length !== got.length) {
    throw new StepError(`got ${got.length} rows, want ${want.length}: ${JSON.stringify(got.slice(0, 5).map((r) => r.map(show)))}`)
  }
  want.forEach((w, i) => {
    if (w.length !== got[i].length) throw new StepError(`row ${i} has ${got[i].length} columns, want ${w.length}`)
    w.forEach((wc, j) => {
      if (!same(wc, got[i][j])) throw new StepError(`row ${i} column ${j} is ${show(got[i][j])}, want ${show(wc)}`)
    })
  })
}

function cell (v) {
  if (v === null || typeof v === 'string' || v instanceof Date) return v
  return String(v)
}

function rowsOf (result) {
  // A multi-statement query answers with one result per statement.
  const r = Array.isArray(result) ? result[result.length - 1] : result
  return (r.rows || []).map((row) => row.map(cell))
}

function parseCopy (text) {
  return text.split('\n').filter((l) => l !== '').map((l) => l.split('\t').map((f) => (f === '\\N' ? null : f)))
}

// --- connections --------------------------------------------------------------------

function optionsFor (spec, session) {
  const opts = ['-c pgtestproxy.mode=' + MODE]
  if (session) opts.push('-c pgtestproxy.session=' + session)
  if (spec.timezone) opts.push('-c TimeZone=' + spec.timezone)
  return opts.join(' ')
}

// Conn is one of a case's connections: a pg.Client, or a pg.Pool when the case asks
// for a pool. Rows come as arrays (rowMode 'array').
class Conn {
  constructor (spec, session) {
    this.config = { connectionString: process.env.DATABASE_URL, options: optionsFor(spec, session) }
    this.pool = spec.pool ? new pg.Pool({ ...this.config, max: POOL_SIZE }) : null
    this.client = null
    this.prepared = {}
  }

  async connect () {
    if (this.pool) {
      const c = await this.pool.connect()
      c.release()
      return
    }
    this.client = new pg.Client(this.config)
    this.client.on('error', () => {}) // reported by the query that fails
    await this.client.connect()
  }

  q () { return this.pool || this.client }

  async query (text, params) {
    const values = (params || []).map(decode)
    return rowsOf(await this.q().query({ text, values, rowMode: 'array' }))
  }

  async begin (isolation) {
    await this.client.query(isolation ? 'BEGIN ISOLATION LEVEL ' + isolation.toUpperCase() : 'BEGIN')
  }

  async prepare (name, text) {
    // node-postgres prepares a named query on the server the first time it runs it.
    this.prepared[name] = text
  }

  async execute (name, params) {
    const values = (params || []).map(decode)
    return rowsOf(await this.q().query({ name, text: this.prepared[name], values, rowMode: 'array' }))
  }

  async copyIn (table, columns, data) {
    const text = data.map((r) => r.map((v) => (v === null ? '\\N' : v)).join('\t') + '\n').join('')
    const sql = `COPY ${pg.escapeIdentifier(table)} (${columns.map((c) => pg.escapeIdentifier(c)).join(', ')}) FROM STDIN`
    await pipeline(Readable.from([text]), this.client.query(copyFrom(sql)))
  }

  async copyOut (sql) {
    const chunks = []
    const sink = new Writable({ write (chunk, _enc, cb) { chunks.push(chunk); cb() } })
    await pipeline(this.client.query(copyTo(sql)), sink)
    return parseCopy(Buffer.concat(chunks).toString('utf8'))
  }

  async batch (statements) {
    // One query string without parameters: a simple Query.
    await this.q().query(statements.join('; '))
  }

  // cancel runs sql and, after the delay, cancels it the way node-postgres does: a
  // second Client's cancel(client, query) sends a CancelRequest with the key the
  // proxy issued to the first. Unlike libpq's PQcancel, node-postgres does not wait
  // for the server to close the cancel connection, which it does once it has
  // signalled the backend; PostgreSQL signals the backend twice (its pid and its
  // process group), so a query sent before then can be cancelled too. The runner
  // waits for that close, as libpq does, before it uses the connection again.
  async cancel (text, afterMs) {
    const query = new pg.Query(text)
    const done = new Promise((resolve, reject) => {
      query.on('end', resolve)
      query.on('error', reject)
    })
    this.client.query(query)
    await new Promise((resolve) => setTimeout(resolve, afterMs))
    const canceller = new pg.Client(this.config)
    const closed = new Promise((resolve) => canceller.connection.once('end', resolve))
    canceller.connection.on('error', () => {}) // the close is what matters
    canceller.cancel(this.client, query)
    try {
      await done
    } finally {
      await closed
    }
  }

  async parallel (n, text) {
    const runs = []
    if (!this.pool) {
      for (let i = 0; i < n; i++) runs.push(await this.query(text))
      return runs
    }
    for (let i = 0; i < n; i++) runs.push(this.query(text))
    return Promise.all(runs)
  }

  // reconnect: the pool destroys its idle clients (release(true)) and connects anew on
  // demand; a client is ended and connected again.
  async reconnect () {
    if (!this.pool) {
      await this.client.end()
      return this.connect()
    }
    const idle = []
    for (let i = this.pool.idleCount; i > 0; i--) idle.push(await this.pool.connect())
    idle.forEach((c) => c.release(true))
  }

  async close () {
    if (this.pool) return this.pool.end()
    if (this.client) return this.client.end()
  }
}

// errorInfo returns the SQLSTATE and constraint when err is node-postgres's
// DatabaseError, else null.
function errorInfo (err) {
  if (!(err instanceof pg.DatabaseError)) return null
  return { code: err.code, constraint: err.constraint }
}

// --- cases ----------------------------------------------------------------------------

async function runStep (conns, step, saved) {
  const c = conns[step.conn]
  const op = step.do || 'query'
  let rows = null
  let error = null
  try {
    switch (op) {
      case 'query':
        if (step.parallel) {
          for (const r of await c.parallel(step.parallel, step.sql)) if (step.rows) checkRows(step.rows, r)
          return
        }
        rows = await c.query(step.sql, step.params)
        break
      case 'begin': await c.begin(step.isolation); break
      case 'commit': await c.client.query('COMMIT'); break
      case 'rollback': await c.client.query('ROLLBACK'); break
      case 'prepare': await c.prepare(step.name, step.sql); break
      case 'execute': rows = await c.execute(step.name, step.params); break
      case 'copy_in': await c.copyIn(step.table, step.columns, step.data); break
      case 'copy_out': rows = await c.copyOut(step.sql); break
      case 'batch': await c.batch(step.statements); break
      case 'cancel': {
        const start = Date.now()
        try {
          await c.cancel(step.sql, step.after_ms || 0)
        } finally {
          if (Date.now() - start > 10000) throw new StepError('the cancelled query ran on: the cancel did not reach its backend')
        }
        break
      }
      case 'reconnect': await c.reconnect(); break
      case 'close': await c.close(); break
      default: throw new StepError('unknown step ' + op)
    }
  } catch (e) {
    if (e instanceof StepError) throw e
    error = e
  }
  checkOutcome(step, rows, error, saved)
}

function checkOutcome (step, rows, error, saved) {
  if (step.error) {
    if (!error) throw new StepError(`succeeded, want SQLSTATE ${step.error}`)
    const info = errorInfo(error)
    if (!info) throw new StepError(`${error} (${error.constructor.name}) is not node-postgres's DatabaseError`)
    if (info.code !== step.error) throw new StepError(`SQLSTATE ${info.code} (${error.message}), want ${step.error}`)
    if (step.constraint && info.constraint !== step.constraint) {
      throw new StepError(`constraint ${JSON.stringify(info.constraint)}, want ${JSON.stringify(step.constraint)}`)
    }
    return
  }
  if (error) throw new StepError(`${error.constructor.name}: ${error.message}`)
  if (step.rows) checkRows(step.rows, rows)
  if ('row_count' in step && rows.length !== step.row_count) {
    throw new StepError(`got ${rows.length} rows, want ${step.row_count}`)
  }
  for (const key of ['save', 'same_as', 'differs_from']) {
    if (!(key in step)) continue
    if (rows.length !== 1 || rows[0].length !== 1 || typeof rows[0][0] !== 'string') {
      throw new StepError('want one text value to compare, got ' + JSON.stringify(rows))
    }
    const got = rows[0][0]
    const was = saved[step[key]]
    if (key === 'save') saved[step[key]] = got
    else if (key === 'same_as' && got !== was) throw new StepError(`got ${got}, want the same as ${step[key]} (${was})`)
    else if (key === 'differs_from' && got === was) throw new StepError(`got ${got}, want something other than ${step[key]}`)
  }
}

function describe (step) {
  const op = step.do || 'query'
  if (step.sql) return `${op} ${JSON.stringify(step.sql.slice(0, 70))}`
  return op + (step.name ? ' ' + step.name : '')
}

async function runCase (kase) {
  const missing = (kase.needs || []).filter((n) => !CAPS.has(n))
  if (missing.length) return ['SKIP', 'n/a: node-postgres runner has no ' + missing.join(', ')]
  const conns = {}
  const saved = {}
  try {
    for (const [i, step] of kase.steps.entries()) {
      if (step.modes && !step.modes.includes(MODE)) continue
      const name = step.conn
      if (!conns[name] && step.do !== 'close') {
        const spec = kase.conns[name]
        const session = spec.session ? `${RUN}-${kase.name}-${spec.session}` : ''
        const c = new Conn(spec, session)
        try {
          await c.connect()
        } catch (e) {
          throw new StepError(`step ${i}: connect ${name}: ${e.message}`)
        }
        conns[name] = c
      }
      try {
        await runStep(conns, step, saved)
      } catch (e) {
        throw new StepError(`step ${i} (${describe(step)} on ${name}): ${e.message}`)
      }
      if (step.do === 'close') delete conns[name]
    }
    return ['PASS', '']
  } catch (e) {
    return ['FAIL', e instanceof StepError ? e.message : String(e && e.stack)]
  } finally {
    for (const c of Object.values(conns)) await c.close().catch(() => {})
  }
}

async function main () {
  const cases = JSON.parse(fs.readFileSync(CASES, 'utf8')).cases
  const counts = { PASS: 0, FAIL: 0, SKIP: 0 }
  for (const kase of cases) {
    if (kase.modes && !kase.modes.includes(MODE)) continue
    const [status, why] = await runCase(kase)
    counts[status]++
    let line = `${status} ${kase.name}`
    if (why) {
      const [first, ...rest] = why.split('\n')
      line += ': ' + first
      if (rest.length) line += '\n' + rest.map((l) => '  ' + l).join('\n')
    }
    console.log(line)
  }
  const version = require('pg/package.json').version
  console.log(`pg ${version} (${MODE} mode): ${counts.PASS} passed, ${counts.FAIL} failed, ${counts.SKIP} skipped`)
  return counts.FAIL ? 1 : 0
}

main().then((code) => { process.exitCode = code }, (e) => { console.error(e); process.exitCode = 2 })
