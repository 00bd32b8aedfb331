CREATE OR REPLACE VIEW user_names AS SELECT name, email FROM users;
