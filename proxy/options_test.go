package proxy

import (
	"slices"
	"testing"

	"github.com/pgtestproxy/pgtestproxy/internal/leasemode"
	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
)

func TestSplitOptions(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"   ", nil},
		{"-c a=b", []string{"-c", "a=b"}},
		{" \t-c\na=b  --x=y ", []string{"-c", "a=b", "--x=y"}},
		{`-c search_path=a\ b`, []string{"-c", "search_path=a b"}},
		{`-c x=a\\b`, []string{"-c", `x=a\b`}},
		{`-c x=\a`, []string{"-c", "x=a"}},
		{`trailing\`, []string{"trailing"}},
		{`\ `, []string{" "}},
	}
	for _, tc := range tests {
		if got := splitOptions(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("splitOptions(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestExtractProxyOptions(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		settings map[string]string
		rest     string
		code     string // SQLSTATE of the error, if one is wanted
	}{
		{"empty", "", nil, "", ""},
		{"only others", "-c search_path=a,b -B 100", nil, "-c search_path=a,b -B 100", ""},
		{"separate -c", "-c pgtestproxy.mode=tx", map[string]string{"pgtestproxy.mode": "tx"}, "", ""},
		{"attached -c", "-cpgtestproxy.session=k", map[string]string{"pgtestproxy.session": "k"}, "", ""},
		{"long form", "--pgtestproxy.session=k", map[string]string{"pgtestproxy.session": "k"}, "", ""},
		{"dashes and case", "--PgTestProxy.Mode=db", map[string]string{"pgtestproxy.mode": "db"}, "", ""},
		{"mixed keeps order and escapes", `-c a=b -c pgtestproxy.session=x\ y -c c=d\ e`,
			map[string]string{"pgtestproxy.session": "x y"}, `-c a=b -c c=d\ e`, ""},
		{"no value", "-c pgtestproxy.mode", nil, "", "22023"},
		{"dangling -c", "-c", nil, "-c", ""},
		{"-c takes the next argument whole", "-c --pgtestproxy.mode=tx", nil, "-c --pgtestproxy.mode=tx", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			settings, rest, err := extractProxyOptions(tc.in)
			if tc.code != "" {
				if got := pgerr.SQLState(err); got != tc.code {
					t.Fatalf("want error %s, got %v", tc.code, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rest != tc.rest || len(settings) != len(tc.settings) {
				t.Fatalf("got %v, rest %q; want %v, rest %q", settings, rest, tc.settings, tc.rest)
			}
			for k, v := range tc.settings {
				if settings[k] != v {
					t.Fatalf("setting %s = %q, want %q", k, settings[k], v)
				}
			}
		})
	}
}

func TestParseParams(t *testing.T) {
	tests := []struct {
		name    string
		params  map[string]string
		mode    leasemode.Mode
		session string
		db      string
		runtime map[string]string
		code    string
	}{
		{"defaults", map[string]string{"user": "u"}, leasemode.DB, "", "u", map[string]string{}, ""},
		{"plain params", map[string]string{"user": "u", "database": "app", "mode": "TX", "session": "s1", "TimeZone": "UTC"},
			leasemode.Tx, "s1", "app", map[string]string{"TimeZone": "UTC"}, ""},
		{"options", map[string]string{"user": "u", "database": "app", "options": "-c pgtestproxy.mode=tx -c pgtestproxy.session=s -c work_mem=1MB"},
			leasemode.Tx, "s", "app", map[string]string{"options": "-c work_mem=1MB"}, ""},
		{"plain wins over options", map[string]string{"user": "u", "options": "-c pgtestproxy.mode=tx", "mode": "db"},
			leasemode.DB, "", "u", map[string]string{}, ""},
		{"protocol options not forwarded", map[string]string{"user": "u", "_pq_.x": "1"}, leasemode.DB, "", "u", map[string]string{}, ""},
		{"bad plain mode", map[string]string{"user": "u", "mode": "fast"}, "", "", "", nil, "22023"},
		{"bad option mode", map[string]string{"user": "u", "options": "-c pgtestproxy.mode=fast"}, "", "", "", nil, "22023"},
		{"unknown proxy option", map[string]string{"user": "u", "options": "-c pgtestproxy.colour=red"}, "", "", "", nil, "22023"},
		{"name+tx", map[string]string{"user": "u", "database": "app+tx"}, leasemode.Tx, "", "app", map[string]string{}, ""},
		{"name+db", map[string]string{"user": "u", "database": "app+db"}, leasemode.DB, "", "app", map[string]string{}, ""},
		{"name+tx+key", map[string]string{"user": "u", "database": "app+TX+k1"}, leasemode.Tx, "k1", "app", map[string]string{}, ""},
		{"name+db+key", map[string]string{"user": "u", "database": "app+db+k1"}, leasemode.DB, "k1", "app", map[string]string{}, ""},
		{"user name with settings", map[string]string{"user": "app+tx"}, leasemode.Tx, "", "app", map[string]string{}, ""},
		{"name agrees with options and params", map[string]string{"user": "u", "database": "app+tx+k",
			"options": "-c pgtestproxy.mode=tx -c pgtestproxy.session=k", "mode": "TX", "session": "k"},
			leasemode.Tx, "k", "app", map[string]string{}, ""},
		{"name+ empty", map[string]string{"user": "u", "database": "app+"}, "", "", "", nil, "22023"},
		{"name+bad mode", map[string]string{"user": "u", "database": "app+xx"}, "", "", "", nil, "22023"},
		{"name+key without mode", map[string]string{"user": "u", "database": "app+k1"}, "", "", "", nil, "22023"},
		{"name+tx+ empty key", map[string]string{"user": "u", "database": "app+tx+"}, "", "", "", nil, "22023"},
		{"too many parts", map[string]string{"user": "u", "database": "app+tx+k+1"}, "", "", "", nil, "22023"},
		{"empty template", map[string]string{"user": "u", "database": "+tx"}, "", "", "", nil, "22023"},
		{"name and options disagree on mode", map[string]string{"user": "u", "database": "app+tx",
			"options": "-c pgtestproxy.mode=db"}, "", "", "", nil, "22023"},
		{"name and param disagree on mode", map[string]string{"user": "u", "database": "app+db", "mode": "tx"}, "", "", "", nil, "22023"},
		{"name and options disagree on key", map[string]string{"user": "u", "database": "app+tx+a",
			"options": "-c pgtestproxy.session=b"}, "", "", "", nil, "22023"},
		{"name and param disagree on key", map[string]string{"user": "u", "database": "app+tx+a", "session": "b"}, "", "", "", nil, "22023"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseParams(tc.params, leasemode.DB)
			if tc.code != "" {
				if got := pgerr.SQLState(err); got != tc.code {
					t.Fatalf("want error %s, got %v", tc.code, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.mode != tc.mode || p.session != tc.session || p.database != tc.db || len(p.startup.Runtime) != len(tc.runtime) {
				t.Fatalf("got mode %q session %q db %q runtime %v", p.mode, p.session, p.database, p.startup.Runtime)
			}
			for k, v := range tc.runtime {
				if p.startup.Runtime[k] != v {
					t.Fatalf("runtime %s = %q, want %q", k, p.startup.Runtime[k], v)
				}
			}
		})
	}
}

// FuzzOptions checks that the options parser never panics, that what it passes on
// parses back to the same arguments, and that it never passes a pgtestproxy setting on.
func FuzzOptions(f *testing.F) {
	for _, s := range []string{"", "-c a=b", `-c pgtestproxy.mode=tx --pgtestproxy.session=a\ b -c x=y\\`,
		"-cpgtestproxy.session=1 -c", "\t\n\v\f\r", `\`, "--a-b=c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args := splitOptions(s)
		if again := splitOptions(joinOptions(args)); !slices.Equal(again, args) {
			t.Fatalf("round trip of %q: %q != %q", s, again, args)
		}
		settings, rest, err := extractProxyOptions(s)
		if err != nil {
			return
		}
		_ = settings
		settings2, rest2, err := extractProxyOptions(rest)
		if err != nil || len(settings2) != 0 || rest2 != rest {
			t.Fatalf("passed-on options %q still hold proxy settings %v (rest %q, %v)", rest, settings2, rest2, err)
		}
	})
}
