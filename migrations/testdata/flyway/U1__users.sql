SELECT 1/0; -- an undo migration, never applied
