-- Every lease starts from exactly these rows.
INSERT INTO users (name, note) VALUES ('alice', 'seed'), ('bob', NULL);
INSERT INTO parents (id) VALUES (1);
