-- V1_10 comes after V1_2: it needs the column V1_2 adds.
CREATE UNIQUE INDEX users_email ON users (email);
