"""A tiny migration runner of another language: applies migrations/*.sql in name
order with psycopg2, recording each in applied_migrations, as ORMs' runners do."""
import os
import pathlib
import sys

import psycopg2

here = pathlib.Path(__file__).parent
conn = psycopg2.connect(os.environ["DATABASE_URL"])
with conn, conn.cursor() as cur:
    cur.execute("CREATE TABLE IF NOT EXISTS applied_migrations (name text PRIMARY KEY)")
    for path in sorted((here / "migrations").glob("*.sql")):
        cur.execute(path.read_text())
        cur.execute("INSERT INTO applied_migrations VALUES (%s)", (path.name,))
        print("applied", path.name, file=sys.stderr)
conn.close()
