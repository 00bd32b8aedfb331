package sqllex

// notColID holds PostgreSQL 15's reserved and type_func_name keywords: the words that
// cannot be an unquoted ColId (a savepoint or database name). The server test checks
// the list against pg_get_keywords().
var notColID = map[string]struct{}{
	// reserved
	"all": {}, "analyse": {}, "analyze": {}, "and": {}, "any": {}, "array": {}, "as": {},
	"asc": {}, "asymmetric": {}, "both": {}, "case": {}, "cast": {}, "check": {},
	"collate": {}, "column": {}, "constraint": {}, "create": {}, "current_catalog": {},
	"current_date": {}, "current_role": {}, "current_time": {}, "current_timestamp": {},
	"current_user": {}, "default": {}, "deferrable": {}, "desc": {}, "distinct": {},
	"do": {}, "else": {}, "end": {}, "except": {}, "false": {}, "fetch": {}, "for": {},
	"foreign": {}, "from": {}, "grant": {}, "group": {}, "having": {}, "in": {},
	"initially": {}, "intersect": {}, "into": {}, "lateral": {}, "leading": {},
	"limit": {}, "localtime": {}, "localtimestamp": {}, "not": {}, "null": {},
	"offset": {}, "on": {}, "only": {}, "or": {}, "order": {}, "placing": {},
	"primary": {}, "references": {}, "returning": {}, "select": {}, "session_user": {},
	"some": {}, "symmetric": {}, "table": {}, "then": {}, "to": {}, "trailing": {},
	"true": {}, "union": {}, "unique": {}, "user": {}, "using": {}, "variadic": {},
	"when": {}, "where": {}, "window": {}, "with": {},
	// type_func_name
	"authorization": {}, "binary": {}, "collation": {}, "concurrently": {}, "cross": {},
	"current_schema": {}, "freeze": {}, "full": {}, "ilike": {}, "inner": {}, "is": {},
	"isnull": {}, "join": {}, "left": {}, "like": {}, "natural": {}, "notnull": {},
	"outer": {}, "overlaps": {}, "right": {}, "similar": {}, "tablesample": {},
	"verbose": {},
}

// reserved reports whether the unquoted word w cannot be a ColId.
func reserved(w string) bool {
	const longest = len("current_timestamp")
	if len(w) > longest {
		return false
	}
	var b [longest]byte
	for i := 0; i < len(w); i++ {
		c := w[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	_, ok := notColID[string(b[:len(w)])]
	return ok
}
