package migrations

import (
	"strings"
	"testing"
)

// FuzzParseUp: parsing a goose or dbmate file never panics, its up part lies inside
// the file, and every statement is in the file at its offset, on its line, and
// inside the up part.
func FuzzParseUp(f *testing.F) {
	for _, s := range []string{
		"-- +goose Up\nSELECT 1;\n-- +goose Down\nSELECT 2;\n",
		"-- +goose NO TRANSACTION\n-- +goose Up\n-- +goose StatementBegin\nDO $$ BEGIN END $$;\n-- +goose StatementEnd\n",
		"-- +goose Up\n-- +goose StatementBegin\n", "-- +goose Down\n-- +goose Up\nSELECT 1", "-- +goose up\r\nSELECT 'x;\r\n';",
		"-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY i ON t (a);\n-- migrate:down\n",
		"-- migrate:up\n\\restrict x\nCOPY t FROM stdin;\n1\n\\.\n", "-- migrate:down\n-- migrate:up\n", "\xff-- migrate:up\n\xfe;",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		for _, format := range []Format{Goose, Dbmate} {
			part, err := parseUp(format, "x.sql", []byte(data))
			if err != nil {
				continue
			}
			if !strings.Contains(data, string(part.body)) {
				t.Fatalf("%s: up part %q is not in the file", format, part.body)
			}
			for _, c := range part.cmds {
				if c.Start < 0 || c.Start+len(c.Text) > len(data) || data[c.Start:c.Start+len(c.Text)] != c.Text {
					t.Fatalf("%s: statement %+v is not at its offset in %q", format, c, data)
				}
				if want := strings.Count(data[:c.Start], "\n") + 1; c.Line != want {
					t.Fatalf("%s: statement %+v on line %d, want %d", format, c, c.Line, want)
				}
			}
		}
	})
}
