package proxy

// quietError is a failure that cannot be reported to the client, because the
// channel to it is what broke (a failed TLS handshake).
type quietError struct{ err error }

func (e *quietError) Error() string { return e.err.Error() }
func (e *quietError) Unwrap() error { return e.err }
