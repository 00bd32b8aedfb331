-- The behavioural suite's schema (integration/suite/cases.json relies on it).
CREATE TABLE users (
    id   serial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    note text
);

CREATE TABLE events (
    id    serial PRIMARY KEY,
    at    timestamptz NOT NULL,
    label text
);

CREATE TABLE blobs (
    id   serial PRIMARY KEY,
    body text NOT NULL
);

CREATE TABLE parents (id int PRIMARY KEY);

CREATE TABLE children (
    id        int PRIMARY KEY,
    parent_id int NOT NULL REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED
);
