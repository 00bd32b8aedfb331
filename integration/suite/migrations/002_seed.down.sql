DELETE FROM parents;
DELETE FROM users;
