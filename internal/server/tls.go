package server

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"

	"github.com/rs/zerolog"
)

// tlsListener terminates TLS for net/http itself, where http.Server's
// ServeTLS would hand net/http a *tls.Conn: net/http writes its own
// text/plain answers to requests it cannot parse straight to a *tls.Conn,
// while through a replayConn they become chatd's JSON errors, as on plain
// HTTP (PROTOCOL.md §1: every HTTP error body is JSON). Only HTTP/1.1 is
// offered: a WebSocket upgrade needs it.
type tlsListener struct {
	net.Listener // a tls.NewListener
	log          zerolog.Logger
}

// newTLSListener loads the certificate and key and wraps ln.
func newTLSListener(ln net.Listener, certFile, keyFile string, log zerolog.Logger) (*tlsListener, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate %s and key %s: %w", certFile, keyFile, err)
	}
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"http/1.1"},
		MinVersion:   tls.VersionTLS12,
	}
	return &tlsListener{Listener: tls.NewListener(ln, cfg), log: log}, nil
}

// Accept implements net.Listener for net/http.
func (l *tlsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &replayConn{Conn: &tlsConn{Conn: c.(*tls.Conn), log: l.log}}, nil
}

// tlsConn is a *tls.Conn that answers a client speaking plain HTTP to it,
// and logs failed handshakes, as net/http does for the *tls.Conn it makes
// itself.
type tlsConn struct {
	*tls.Conn
	log  zerolog.Logger
	once sync.Once // the handshake's failure is handled once
}

// Read reads through TLS; the handshake is made by the first Read, under
// the deadline net/http set for the request's head.
func (c *tlsConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && !c.ConnectionState().HandshakeComplete {
		c.once.Do(func() { c.handshakeFailed(err) })
	}
	return n, err
}

// plainHTTPOverTLS answers, in plain text on the socket, a client that sent
// an HTTP request to the TLS port: the same JSON error as every other, so
// that whoever typed http:// for https:// sees why.
var plainHTTPOverTLS = rawJSONError(http.StatusBadRequest, "bad_request", "this port speaks TLS: use https:// or wss://")

func (c *tlsConn) handshakeFailed(err error) {
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) && rh.Conn != nil && looksLikeHTTP(rh.RecordHeader[:]) {
		_, _ = rh.Conn.Write(plainHTTPOverTLS)
		return
	}
	c.log.Debug().Err(err).Str("remote", c.RemoteAddr().String()).Msg("TLS handshake failed")
}

// looksLikeHTTP reports whether the first bytes a client sent begin an
// HTTP/1 request (the methods net/http itself recognises for this).
func looksLikeHTTP(hdr []byte) bool {
	switch string(hdr) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}
