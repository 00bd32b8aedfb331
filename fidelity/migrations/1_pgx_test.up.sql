-- pgx v5.12.0 testsetup/postgresql_setup.sql, the part that applies to one database,
-- as a golang-migrate migration. It runs twice per server: into the direct run's
-- database and into the proxy's template. Roles are cluster-wide, so they are created
-- only when missing. Left out: the role named after the OS user (`whoami`; the suite's
-- DSNs name the user postgres) and everything for SSL, certificates, pgbouncer and OAuth
-- (their tests skip without their PGX_TEST_* variables; the embedded server trusts
-- 127.0.0.1 and has no TLS).
create extension if not exists hstore;
create extension if not exists ltree;
create domain uint64 as numeric(20,0);

set password_encryption = md5;
do $$
begin
	if not exists (select from pg_roles where rolname = 'pgx_md5') then
		create user pgx_md5 with superuser password 'secret';
	end if;
end
$$;
set password_encryption = 'scram-sha-256';
do $$
declare
	r text;
begin
	foreach r in array array['pgx_ssl', 'pgx_sslcert', 'pgx_pw', 'pgx_scram'] loop
		if not exists (select from pg_roles where rolname = r) then
			execute format('create user %I with superuser password %L', r, 'secret');
		end if;
	end loop;
	if not exists (select from pg_roles where rolname = 'pgx_oauth') then
		create user pgx_oauth with superuser;
	end if;
	-- pgtype's aclitem test needs this role to exist (text_test.go).
	if not exists (select from pg_roles where rolname = $r$ tricky, ' } " \ test user $r$) then
		create user " tricky, ' } "" \ test user " superuser password 'secret';
	end if;
end
$$;
