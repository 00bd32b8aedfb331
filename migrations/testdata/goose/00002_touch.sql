-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION touch_name() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.name := lower(NEW.name);
  RETURN NEW;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER users_touch BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION touch_name();

-- +goose Down
-- +goose StatementBegin
DROP FUNCTION touch_name() CASCADE;
-- +goose StatementEnd
