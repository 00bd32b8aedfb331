package sqllex

import (
	"strings"
	"testing"
)

type scriptCase struct {
	name string
	src  string
	want []Command // Kind, Text, Line, Copy, CopyData, CopyLine compared
}

var scriptCases = []scriptCase{
	{"empty", "", nil},
	{"comments only", "-- a;\n/* b; */\n", nil},
	{"statements and lines", "SELECT 1;\n\n-- c\nSELECT 'a;\nb';SELECT 3",
		[]Command{{Text: "SELECT 1", Line: 1}, {Text: "SELECT 'a;\nb'", Line: 4}, {Text: "SELECT 3", Line: 5}}},
	{"dump header", "\\restrict abc123\r\nSET x = 1;\n\\unrestrict abc123\n",
		[]Command{{Kind: MetaCommand, Text: `\restrict abc123`, Line: 1}, {Text: "SET x = 1", Line: 2},
			{Kind: MetaCommand, Text: `\unrestrict abc123`, Line: 3}}},
	{"copy from stdin", "COPY public.t (a, b) FROM stdin;\n1\t'x;\n2\t\\N\n\\.\nSELECT 1;\n",
		[]Command{{Text: "COPY public.t (a, b) FROM stdin", Line: 1, Copy: true, CopyData: "1\t'x;\n2\t\\N\n", CopyLine: 2},
			{Text: "SELECT 1", Line: 5}}},
	{"copy with no rows", "COPY t FROM STDIN WITH (FORMAT csv);\n\\.\n",
		[]Command{{Text: "COPY t FROM STDIN WITH (FORMAT csv)", Line: 1, Copy: true, CopyLine: 2}}},
	{"copy data left open", "COPY t FROM stdin;\n1\n2",
		[]Command{{Text: "COPY t FROM stdin", Line: 1, Copy: true, CopyData: "1\n2", CopyLine: 2}}},
	{"copy to stdout is a statement", "COPY t TO stdout;\nSELECT 1;",
		[]Command{{Text: "COPY t TO stdout", Line: 1}, {Text: "SELECT 1", Line: 2}}},
	{"copy from a file is a statement", "COPY t FROM '/x/stdin';SELECT 1",
		[]Command{{Text: "COPY t FROM '/x/stdin'", Line: 1}, {Text: "SELECT 1", Line: 1}}},
	{"stdin inside parentheses", "COPY (SELECT 1 FROM stdin) TO stdout;\nSELECT 2",
		[]Command{{Text: "COPY (SELECT 1 FROM stdin) TO stdout", Line: 1}, {Text: "SELECT 2", Line: 2}}},
	{"function body whole", "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$\nBEGIN\n  RETURN 1;\nEND $$;\n\\connect other\n",
		[]Command{{Text: "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$\nBEGIN\n  RETURN 1;\nEND $$", Line: 1},
			{Kind: MetaCommand, Text: `\connect other`, Line: 5}}},
}

func TestScript(t *testing.T) {
	t.Parallel()
	for _, tt := range scriptCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Script(tt.src)
			checkScript(t, tt.src, got)
			if len(got) != len(tt.want) {
				t.Fatalf("Script(%q) = %d commands %+v, want %d", tt.src, len(got), got, len(tt.want))
			}
			for i, c := range got {
				w := tt.want[i]
				if c.Kind != w.Kind || c.Text != w.Text || c.Line != w.Line || c.Copy != w.Copy ||
					c.CopyData != w.CopyData || c.CopyLine != w.CopyLine {
					t.Errorf("command %d = %+v, want %+v", i, c, w)
				}
			}
		})
	}
}

// checkScript checks what holds for every script: commands are in order, each Text is
// where Start says, on the line Line says, and is not empty.
func checkScript(t *testing.T, src string, cmds []Command) {
	t.Helper()
	prev := -1
	for i, c := range cmds {
		if c.Start <= prev || c.Start+len(c.Text) > len(src) || src[c.Start:c.Start+len(c.Text)] != c.Text || c.Text == "" {
			t.Fatalf("Script(%q)[%d] = %+v: not in order or not at its offset", src, i, c)
		}
		if want := strings.Count(src[:c.Start], "\n") + 1; c.Line != want {
			t.Fatalf("Script(%q)[%d] on line %d, want %d", src, i, c.Line, want)
		}
		if c.Copy && !strings.Contains(src[c.Start:], c.CopyData) {
			t.Fatalf("Script(%q)[%d]: copy data %q not in the script", src, i, c.CopyData)
		}
		prev = c.Start
	}
}

// FuzzScript: Script never panics and its commands satisfy checkScript; a script of
// plain statements gives the statements Split finds.
func FuzzScript(f *testing.F) {
	addSeeds(f)
	for _, c := range scriptCases {
		f.Add(c.src)
	}
	for _, s := range []string{"\\", "\\.", "COPY t FROM stdin;", "COPY t FROM stdin;\n\\.", "COPY", "COPY (", "COPY t FROM stdin\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		cmds := Script(src)
		checkScript(t, src, cmds)
		if strings.Contains(src, `\`) || strings.Contains(strings.ToLower(src), "copy") {
			return
		}
		var want []string
		for _, st := range Split(src) {
			if st.Kind != Empty {
				want = append(want, st.Text)
			}
		}
		if len(want) != len(cmds) {
			t.Fatalf("Script(%q) = %d commands, Split has %d statements", src, len(cmds), len(want))
		}
		for i, c := range cmds {
			if !strings.HasSuffix(want[i], c.Text) {
				t.Fatalf("Script(%q)[%d] = %q, Split's statement %q", src, i, c.Text, want[i])
			}
		}
	})
}
