-- migrate:up transaction:false
CREATE INDEX CONCURRENTLY users_name ON users (name);

-- migrate:down
DROP INDEX users_name;
