-- migrate:up
CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL);
INSERT INTO users (name) VALUES ('ann');

-- migrate:down
SELECT 1/0;
DROP TABLE users;
