// Package ws implements the WebSocket protocol (RFC 6455) with the
// permessage-deflate extension (RFC 7692), for both servers and clients.
//
// It exists so that chatd owns every byte between its hub and the network:
// an idle connection holds no read or write buffer (buffers are taken from
// pools only while a message is in flight), a broadcast is framed and
// compressed once and the same bytes are written to every connection
// (PreparedMessage), and queued frames are written with one write.
//
// Servers call Accept from an http.Handler; clients call Dial. Both return a
// *Conn. One goroutine at a time may read (ReadMessage); any number may write
// (WriteMessage, WritePrepared, Ping, Close), writes are serialised.
//
// The connection must be read for control frames to be processed: pings are
// answered and the closing handshake is completed by the goroutine that
// reads. A connection that is only written to should still have a reader.
//
// A server holding many idle connections should serve each in a goroutine
// of its own and return from the HTTP handler after Accept: while the
// handler runs, net/http keeps the request and its 4 KiB read and write
// buffers (about 10 KB per connection), and the handler's goroutine has
// grown a larger stack. A connection parked in ReadMessage in a fresh
// goroutine costs about 3 KB of heap and stack in all (see
// docs/performance.md). With Park (Linux), an idle connection needs no
// goroutine at all: the reader parks the connection between messages and
// is resumed, on a new goroutine, when the next one starts arriving; pings
// and pongs are handled meanwhile. Linger waits a little on the reader's
// goroutine first, for a client whose next message comes right away.
// WaitMessage lets a reader take the buffer it reads into only once a
// message arrives.
//
// Writes to a TCP connection that the socket takes at once set no
// deadline; only a write that has to wait for the peer does (WriteTimeout).
// TryWritePrepared writes without ever waiting, for a goroutine that fans a
// message out to many connections and must not be held up by a slow one;
// a Batch makes such writes to many connections together, on Linux
// through io_uring, many sends per system call.
//
// Errors returned after the connection ended carry the close status as a
// *CloseError (see CloseStatus); the codes 1005, 1006 and 1015 are only
// reported, never sent (RFC 6455 §7.4.1).
package ws
