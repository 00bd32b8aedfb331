// Package wire holds what the proxy's session kinds share on the wire: error
// responses in PostgreSQL's terms, message buffers and framing, the backend keys the
// proxy issues and the cancel targets behind them, the upstream connect, sockets that
// close once, and the counters sessions add to. It knows no lease mode.
package wire
