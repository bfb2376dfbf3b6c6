package ws

import (
	"errors"
	"time"
)

// Close starts the closing handshake (RFC 6455 §7.1.2): it sends a close
// frame with code and reason, waits for the peer's close frame, and closes
// the connection, all within CloseTimeout. A goroutine blocked in
// ReadMessage sees the peer's answer and returns a *CloseError; when no
// goroutine is reading, Close reads (and discards) until the answer comes.
// Close returns an error only when the close frame could not be sent; how
// the handshake ended (answered, or timed out: ErrCloseTimeout) is what
// ReadMessage reports.
//
// code 0 or 1005 sends a close frame without a status. Codes that may not
// be sent (1006, 1015, unassigned ones) are refused with an error, and the
// connection is closed without a handshake. Closing twice is harmless.
func (c *Conn) Close(code StatusCode, reason string) error {
	if code != 0 && code != StatusNoStatusReceived && !validWireCode(code) {
		c.closeTransport(nil)
		return errors.New("ws: close code " + code.String() + " may not be sent")
	}
	// The whole handshake, the write of our close frame included (it may
	// wait behind a write blocked on a peer that stopped reading), is
	// bounded by CloseTimeout: then the transport is closed, which ends
	// the blocked write and the wait alike.
	expire := time.AfterFunc(c.opts.CloseTimeout, func() { c.closeTransport(ErrCloseTimeout) })
	defer expire.Stop()
	if _, err := c.writeClose(code, reason, true); err != nil {
		c.closeTransport(nil)
		return err
	}
	// Whether this call sent the close frame or one was sent already (by
	// another Close, or as the answer to the peer's), wait for the peer's.
	c.awaitClose()
	c.closeTransport(nil)
	return nil
}

// closePoll is how often Close checks whether it must read the peer's close
// frame itself because no goroutine is (or is any longer) in ReadMessage.
const closePoll = 10 * time.Millisecond

// awaitClose waits until the transport is closed: by the reader, once it
// read the peer's close frame and let the peer close first (§7.1.1), or by
// Close's timer. When no goroutine is reading, it reads (and discards)
// until the peer's close frame arrives.
func (c *Conn) awaitClose() {
	var poll *time.Ticker
	defer func() {
		if poll != nil {
			poll.Stop()
		}
	}()
	var closed <-chan struct{}
	for {
		if c.readMu.TryLock() {
			if c.readErr == nil {
				var err error
				for err == nil {
					_, _, err = c.readMessage(nil)
				}
				c.readErr = c.readFailed(err)
				c.releaseReadBuffer()
			}
			c.readMu.Unlock()
			return
		}
		if poll == nil {
			poll = time.NewTicker(closePoll)
			closed = c.closed()
		}
		select {
		case <-closed:
			return
		case <-poll.C:
			// The reader may have returned without calling again.
		}
	}
}

// CloseNow closes the connection without a closing handshake, for a peer
// that cannot be waited for.
func (c *Conn) CloseNow() error {
	c.closeTransport(nil)
	return nil
}
