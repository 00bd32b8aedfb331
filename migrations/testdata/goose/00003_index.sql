-- +goose NO TRANSACTION
-- +goose Up
CREATE INDEX CONCURRENTLY users_name ON users (name);

-- +goose Down
DROP INDEX CONCURRENTLY users_name;
