package ws

import (
	"errors"
	"time"
)

// Close starts the closing handshake (RFC 6455 §7.1.2): it sends a close
// frame with code and reason, waits up to CloseTimeout for the peer's
// close frame, and closes the connection. A goroutine blocked in
// ReadMessage sees the peer's answer and returns a *CloseError; when no
// goroutine is reading, Close reads (and discards) until the answer comes.
//
// code 0 or 1005 sends a close frame without a status. Codes that may not
// be sent (1006, 1015, unassigned ones) are refused with an error, and the
// connection is closed without a handshake. Closing twice is harmless.
func (c *Conn) Close(code StatusCode, reason string) error {
	if code != 0 && code != StatusNoStatusReceived && !validWireCode(code) {
		c.closeTransport(nil)
		return errors.New("ws: close code " + code.String() + " may not be sent")
	}
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

// awaitClose waits, for at most CloseTimeout, until the peer's close frame
// was read and the reader that read it closed the transport.
func (c *Conn) awaitClose() {
	timeout := time.NewTimer(c.opts.CloseTimeout)
	defer timeout.Stop()
	var poll *time.Ticker
	defer func() {
		if poll != nil {
			poll.Stop()
		}
	}()
	for {
		if c.readMu.TryLock() {
			// Nobody is reading: read until the peer's close frame arrives.
			if c.readErr == nil {
				_ = c.nc.SetReadDeadline(time.Now().Add(c.opts.CloseTimeout))
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
		}
		select {
		case <-c.closeRecv:
			// The reader saw the close (or the end); it closes the
			// transport after its half-close and drain.
			select {
			case <-c.closed:
			case <-timeout.C:
			}
			return
		case <-timeout.C:
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
