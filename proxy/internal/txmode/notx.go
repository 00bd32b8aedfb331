package txmode

import (
	"strings"

	"github.com/pgtestproxy/pgtestproxy/internal/sqllex"
)

// Statements that cannot run in a transaction block but whose effect on a test's
// clone tx mode can give: it runs what has that effect instead, with a NOTICE that
// says what ran. CREATE INDEX CONCURRENTLY, DROP INDEX CONCURRENTLY and REINDEX …
// CONCURRENTLY run without CONCURRENTLY (nothing else uses the clone, so the lock
// they take blocks nobody); VACUUM with ANALYZE runs as ANALYZE; any other VACUUM runs
// as nothing (a clone lives for one lease). The rest keep the server's 25001 with the
// mode=db hint.

// insteadOfNoTx returns the plan that stands for a statement the server refuses in a
// transaction block, or nil when tx mode has no stand-in for it.
func insteadOfNoTx(t txStmt, text string) []planStmt {
	switch t.noTxCmd {
	case "CREATE INDEX CONCURRENTLY", "DROP INDEX CONCURRENTLY", "REINDEX CONCURRENTLY":
		plain := withoutConcurrently(text)
		if plain == "" {
			return nil
		}
		return []planStmt{notice("tx mode ran " + strings.TrimSuffix(t.noTxCmd, " CONCURRENTLY") + " without CONCURRENTLY"),
			{sql: plain, role: roleClient}}
	case "VACUUM":
		analyze, ok := vacuumAsAnalyze(text)
		switch {
		case !ok:
			return nil
		case analyze == "":
			return carrierOnly("VACUUM", raiseNotice("tx mode ran nothing for VACUUM: it cannot run in the proxy's transaction, and a clone lives for one lease", ""))
		}
		return []planStmt{notice("tx mode ran ANALYZE for VACUUM: it cannot run in the proxy's transaction"),
			{sql: analyze, role: roleCarrier, tag: "VACUUM"}}
	}
	return nil
}

func notice(msg string) planStmt {
	return planStmt{sql: raiseNotice(msg, ""), role: rolePart, raise: true}
}

// withoutConcurrently returns text without the CONCURRENTLY keyword among its first
// tokens (REINDEX (CONCURRENTLY) is left alone: "").
func withoutConcurrently(text string) string {
	for _, w := range sqllex.Tokens(text, 5) {
		if w.Text == "(" {
			return ""
		}
		if strings.EqualFold(w.Text, "concurrently") {
			return text[:w.Start] + text[w.End:]
		}
	}
	return ""
}

// vacuumAsAnalyze returns the ANALYZE that a VACUUM with ANALYZE stands for, "" for a
// VACUUM without it, and false for a VACUUM it cannot read.
func vacuumAsAnalyze(text string) (string, bool) {
	toks := sqllex.Tokens(text, 64)
	if len(toks) == 0 || !strings.EqualFold(toks[0].Text, "vacuum") {
		return "", false
	}
	analyze := false
	rest := toks[0].End
	i := 1
	if i < len(toks) && toks[i].Text == "(" {
		for i++; i < len(toks) && toks[i].Text != ")"; i++ {
			if isAnalyze(toks[i].Text) {
				analyze = true
			}
		}
		if i == len(toks) {
			return "", false
		}
		rest = toks[i].End
	} else {
		for ; i < len(toks) && isVacuumWord(toks[i].Text); i++ {
			analyze = analyze || isAnalyze(toks[i].Text)
			rest = toks[i].End
		}
	}
	if !analyze {
		return "", true
	}
	return "ANALYZE" + text[rest:], true
}

func isAnalyze(w string) bool {
	return strings.EqualFold(w, "analyze") || strings.EqualFold(w, "analyse")
}

func isVacuumWord(w string) bool {
	for _, k := range []string{"full", "freeze", "verbose", "analyze", "analyse"} {
		if strings.EqualFold(w, k) {
			return true
		}
	}
	return false
}
