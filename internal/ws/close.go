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
	sent, err := c.writeClose(code, reason, true)
	if err != nil {
		c.closeTransport(nil)
		return err
	}
	if !sent {
		// A close is already under way; wait for it like the first caller.
		c.waitCloseRecv()
		c.closeTransport(nil)
		return nil
	}
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
	} else {
		c.waitCloseRecv()
	}
	c.closeTransport(nil)
	return nil
}

func (c *Conn) waitCloseRecv() {
	t := time.NewTimer(c.opts.CloseTimeout)
	defer t.Stop()
	select {
	case <-c.closeRecv:
	case <-t.C:
	}
}

// CloseNow closes the connection without a closing handshake, for a peer
// that cannot be waited for.
func (c *Conn) CloseNow() error {
	c.closeTransport(nil)
	return nil
}
