package wire

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
)

// ErrorResponse says what the error says, in PostgreSQL's terms: a server's error
// keeps its code, message, detail and hint however deeply it is wrapped.
func TestErrorResponse(t *testing.T) {
	server := &pgconn.PgError{Severity: "FATAL", Code: "3D000", Message: `database "x" does not exist`,
		Detail: "the detail", Hint: "the hint"}
	cases := []struct {
		name                        string
		err                         error
		code, message, detail, hint string
	}{
		{"server error", server, "3D000", `database "x" does not exist`, "the detail", "the hint"},
		{"wrapped server error", fmt.Errorf("connect to clone c1: %w", server),
			"3D000", `database "x" does not exist`, "the detail", "the hint"},
		{"twice wrapped server error", fmt.Errorf("lease: %w", fmt.Errorf("connect: %w", server)),
			"3D000", `database "x" does not exist`, "the detail", "the hint"},
		{"own error", &pgerr.Error{Code: pgerrcode.TooManyConnections, Message: "sorry, too many clients already",
			Detail: "at most 1"}, "53300", "sorry, too many clients already", "at most 1", ""},
		{"wrapped own error", fmt.Errorf("admit: %w", pgerr.New(pgerrcode.ProtocolViolation, "bad packet")),
			"08P01", "bad packet", "", ""},
		{"plain error", errors.New("boom"), "XX000", "boom", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := ErrorResponse("FATAL", tc.err)
			if r.Severity != "FATAL" || r.SeverityUnlocalized != "FATAL" || r.Code != tc.code || r.Message != tc.message ||
				r.Detail != tc.detail || r.Hint != tc.hint {
				t.Fatalf("got %s %s %q detail %q hint %q, want FATAL %s %q detail %q hint %q",
					r.Severity, r.Code, r.Message, r.Detail, r.Hint, tc.code, tc.message, tc.detail, tc.hint)
			}
		})
	}
}
