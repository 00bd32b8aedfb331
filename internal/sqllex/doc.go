// Package sqllex splits the SQL that clients send into statements and recognises the
// ones tx mode must handle itself: transaction control (BEGIN, COMMIT, ROLLBACK,
// savepoints, two-phase commit, SET TRANSACTION), statements PostgreSQL refuses
// inside a transaction block (CREATE DATABASE, VACUUM, CREATE INDEX CONCURRENTLY, …),
// and LISTEN, UNLISTEN and NOTIFY, whose channel and payload tx mode carries out.
// The lexer follows PostgreSQL's own scanner (scan.l, with standard_conforming_strings
// on): -- and nested /* */ comments, '…' with doubled quotes, E'…' with backslash
// escapes, U&'…', "…" identifiers, $tag$…$tag$ quotes and string continuation across
// newlines; Split finds statement ends as psql does, also keeping CREATE RULE's
// (a; b) and the BEGIN ATOMIC … END body of a CREATE FUNCTION or PROCEDURE whole.
// Script reads a whole psql script the same way, also finding backslash commands
// and the inline data of COPY … FROM STDIN, for migrations and schema dumps.
// Classification is strict — a statement is Begin only if PostgreSQL would parse it
// as BEGIN; anything malformed is Other and left for the server to reject — and
// cheap: most statements are Other after their first word, without allocating. No
// input makes it panic.
package sqllex
