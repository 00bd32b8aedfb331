package main

import (
	"fmt"
	"io"
	"regexp"
	"strings"
)

// A failure's kind: the causes a failure through the proxy can have that are not the
// proxy's to fix, because the run shares one backend among parallel tests (tx mode
// with one session key for the suite) or because tx mode runs every lease inside the
// proxy's transaction. They are told apart by what the test printed; a failure of no
// kind is "other", which the README lists test by test.
var failureKinds = []struct {
	name string
	re   *regexp.Regexp
}{
	// A test terminated its backend (pg_terminate_backend(pg_backend_pid())): on one
	// shared backend, that ends every connection on it.
	{"backend terminated by a test (57P01)", regexp.MustCompile(`57P01|terminating connection due to administrator command|conn closed`)},
	// Two parallel tests created a table of the same name on the one backend.
	{"same table name as a parallel test (42P07)", regexp.MustCompile(`42P07|already exists`)},
	// A savepoint cannot change the isolation level of the proxy's transaction.
	{"isolation level", regexp.MustCompile(`(?i)isolation level|pgIso|repeatable read|serializable`)},
	// A test's block waited for another connection of the key (deadlock.go).
	{"deadlock between two connections of the key (40P01)", regexp.MustCompile(`40P01`)},
}

// otherKind names the failures of no kind.
const otherKind = "other"

// kindOf returns the kind of test id's failure in res, whose cause is cause, from
// what it and its failed subtests printed.
func kindOf(res *runResult, id, cause string) string {
	text := cause
	for tid, t := range res.Tests { // the test and its subtests, whose output says more
		if tid == id || strings.HasPrefix(tid, id+"/") && t.Action == "fail" {
			text += "\n" + strings.Join(t.Output, "")
		}
	}
	for _, k := range failureKinds {
		if k.re.MatchString(text) {
			return k.name
		}
	}
	return otherKind
}

// printKinds prints how many of a run's failures are of each kind.
func printKinds(w io.Writer, rr *runReport) {
	if len(rr.Kinds) == 0 {
		return
	}
	var parts []string
	for _, k := range failureKinds {
		if n := rr.Kinds[k.name]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k.name, n))
		}
	}
	if n := rr.Kinds[otherKind]; n > 0 {
		parts = append(parts, fmt.Sprintf("%s %d", otherKind, n))
	}
	fmt.Fprintf(w, "by kind: %s\n", strings.Join(parts, "; "))
	for _, o := range rr.Other {
		fmt.Fprintf(w, "  %s: %s\n", otherKind, clip(o))
	}
}
