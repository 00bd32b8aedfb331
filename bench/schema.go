package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// migration sets the bench generates: every file is golang-migrate's NNN_name.up.sql.
// Each set carries a salt in its first file, so a set written with a new salt hashes
// differently and every tool builds its template from scratch (a cold start).
const (
	setSmall   = "small"
	setLarge   = "large"
	setPgbench = "pgbench"
)

// usersTable is the table the simulated tests write to; both the small and the large
// set have it.
const usersTable = `CREATE TABLE bench_users (
	id bigserial PRIMARY KEY,
	email text NOT NULL UNIQUE,
	name text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);
`

// writeSet writes the migration set named set into dir, salted with salt.
func writeSet(dir, set, salt string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var files []string
	switch set {
	case setSmall:
		files = smallSet()
	case setLarge:
		files = largeSet()
	case setPgbench:
		files = pgbenchSet()
	default:
		return fmt.Errorf("unknown migration set %q", set)
	}
	files[0] = fmt.Sprintf("-- bench run %s\n%s", salt, files[0])
	for i, body := range files {
		name := filepath.Join(dir, fmt.Sprintf("%03d_%s_%d.up.sql", i+1, set, i+1))
		if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// smallSet is a handful of tables, indexes and a hundred seed rows.
func smallSet() []string {
	return []string{
		usersTable + `
CREATE TABLE accounts (id bigserial PRIMARY KEY, user_id bigint REFERENCES bench_users(id), balance numeric(12,2) NOT NULL DEFAULT 0);
CREATE INDEX accounts_user_idx ON accounts(user_id);
CREATE TABLE audit (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), what text);
`,
		`CREATE TABLE products (id bigserial PRIMARY KEY, sku text NOT NULL UNIQUE, price numeric(10,2));
CREATE TABLE orders (id bigserial PRIMARY KEY, product_id bigint REFERENCES products(id), qty int NOT NULL);
CREATE INDEX orders_product_idx ON orders(product_id);
INSERT INTO products (sku, price) SELECT 'sku-' || g, g FROM generate_series(1, 100) g;
`,
	}
}

// largeTables, largeFiles and largeSeedRows shape the large set: ≈150 tables with
// indexes, functions and triggers, and ≈20k seed rows.
const (
	largeTables   = 150
	largeFiles    = 15
	largeSeedRows = 134 // per table: 150 × 134 ≈ 20k
)

// largeSet is what a mature application's schema looks like to a test tool.
func largeSet() []string {
	files := []string{usersTable + `
CREATE FUNCTION touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
CREATE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.version := COALESCE(OLD.version, 0) + 1; RETURN NEW; END $$;
`}
	per := largeTables / largeFiles
	for f := range largeFiles {
		var b strings.Builder
		for t := f * per; t < (f+1)*per; t++ {
			name := fmt.Sprintf("t_%03d", t)
			ref := ""
			if t > 0 && t%5 == 0 {
				ref = fmt.Sprintf(" REFERENCES t_%03d(id)", t-1)
			}
			fmt.Fprintf(&b, `CREATE TABLE %[1]s (
	id bigserial PRIMARY KEY,
	ref bigint%[2]s,
	code text NOT NULL,
	amount numeric(12,2) NOT NULL DEFAULT 0,
	status text NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'done')),
	payload jsonb,
	version int NOT NULL DEFAULT 0,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz
);
CREATE UNIQUE INDEX %[1]s_code_key ON %[1]s(code);
CREATE INDEX %[1]s_created_idx ON %[1]s(created_at);
CREATE INDEX %[1]s_ref_idx ON %[1]s(ref);
CREATE TRIGGER %[1]s_touch BEFORE UPDATE ON %[1]s FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER %[1]s_version BEFORE INSERT OR UPDATE ON %[1]s FOR EACH ROW EXECUTE FUNCTION audit_row();
CREATE FUNCTION %[1]s_total(s text) RETURNS numeric LANGUAGE sql STABLE AS $$ SELECT COALESCE(sum(amount), 0) FROM %[1]s WHERE status = s $$;
INSERT INTO %[1]s (code, amount, payload) SELECT '%[1]s-' || g, g, jsonb_build_object('n', g) FROM generate_series(1, %[3]d) g;
`, name, ref, largeSeedRows)
		}
		files = append(files, b.String())
	}
	return files
}

// pgbenchSet is pgbench's own schema at scale 1 (what `pgbench -i -s 1` makes), so
// pgbench runs unchanged against a clone.
func pgbenchSet() []string {
	return []string{`CREATE TABLE pgbench_branches (bid int NOT NULL PRIMARY KEY, bbalance int, filler char(88));
CREATE TABLE pgbench_tellers (tid int NOT NULL PRIMARY KEY, bid int, tbalance int, filler char(84));
CREATE TABLE pgbench_accounts (aid int NOT NULL PRIMARY KEY, bid int, abalance int, filler char(84));
CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22));
INSERT INTO pgbench_branches SELECT 1, 0, '';
INSERT INTO pgbench_tellers SELECT g, 1, 0, '' FROM generate_series(1, 10) g;
INSERT INTO pgbench_accounts SELECT g, 1, 0, '' FROM generate_series(1, 100000) g;
ANALYZE;
`}
}
