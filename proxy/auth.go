package proxy

import (
	"crypto/rand"
	"fmt"
	"io"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"

	"github.com/pgtestproxy/pgtestproxy/internal/pgerr"
	"github.com/pgtestproxy/pgtestproxy/proxy/internal/wire"
)

const (
	scramMechanism  = "SCRAM-SHA-256"
	scramIterations = 4096 // PostgreSQL's scram_iterations default
)

// authenticator checks client passwords with SCRAM-SHA-256. The SCRAM exchange
// itself (nonces, proofs, constant-time comparison) is github.com/xdg-go/scram's, a
// maintained implementation of RFC 5802/7677, rather than hand-rolled crypto.
type authenticator struct {
	server *scram.Server
}

// newAuthenticator derives the stored SCRAM credentials for password once; every
// user name shares them.
func newAuthenticator(password string) (*authenticator, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("scram salt: %w", err)
	}
	client, err := scram.SHA256.NewClient("", password, "")
	if err != nil {
		return nil, fmt.Errorf("scram client for password: %w", err)
	}
	creds, err := client.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(salt), Iters: scramIterations})
	if err != nil {
		return nil, fmt.Errorf("scram stored credentials: %w", err)
	}
	server, err := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return creds, nil })
	if err != nil {
		return nil, fmt.Errorf("scram server: %w", err)
	}
	return &authenticator{server: server}, nil
}

// authenticate runs a SCRAM-SHA-256 exchange with the client. On success the final
// SASL message is left in out for the caller to send with AuthenticationOk.
func (a *authenticator) authenticate(rw io.ReadWriter, user string, out *wire.MsgBuffer) error {
	failed := &pgerr.Error{Code: pgerrcode.InvalidPassword,
		Message: fmt.Sprintf("password authentication failed for user %q", user)}
	conv := a.server.NewConversation()
	out.Add(&pgproto3.AuthenticationSASL{AuthMechanisms: []string{scramMechanism}})
	if err := out.Flush(rw); err != nil {
		return err
	}
	var first pgproto3.SASLInitialResponse
	if err := readAuthMessage(rw, &first); err != nil {
		return err
	}
	if first.AuthMechanism != scramMechanism {
		return pgerr.New(pgerrcode.InvalidAuthorizationSpecification,
			fmt.Sprintf("client selected an invalid SASL authentication mechanism %q", first.AuthMechanism))
	}
	serverFirst, err := conv.Step(string(first.Data))
	if err != nil {
		return failed
	}
	out.Add(&pgproto3.AuthenticationSASLContinue{Data: []byte(serverFirst)})
	if err := out.Flush(rw); err != nil {
		return err
	}
	var final pgproto3.SASLResponse
	if err := readAuthMessage(rw, &final); err != nil {
		return err
	}
	serverFinal, err := conv.Step(string(final.Data))
	if err != nil || !conv.Valid() {
		return failed
	}
	out.Add(&pgproto3.AuthenticationSASLFinal{Data: []byte(serverFinal)})
	return nil
}

// readAuthMessage reads a password-family ('p') message into msg.
func readAuthMessage(r io.Reader, msg pgproto3.FrontendMessage) error {
	typ, body, err := wire.ReadMessage(r, maxAuthMessage)
	if err != nil {
		return err
	}
	if typ != 'p' {
		return pgerr.New(pgerrcode.ProtocolViolation,
			fmt.Sprintf("expected SASL response, got message type %q", typ))
	}
	if err := msg.Decode(body); err != nil {
		return pgerr.New(pgerrcode.ProtocolViolation, "invalid SASL response: "+err.Error())
	}
	return nil
}

// maxAuthMessage bounds a SASL message; real ones are a few hundred bytes.
const maxAuthMessage = 16 << 10
