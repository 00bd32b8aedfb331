-- +goose Up
CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL);
INSERT INTO users (name) VALUES ('ann');

-- +goose Down
SELECT 1/0; -- never applied
DROP TABLE users;
