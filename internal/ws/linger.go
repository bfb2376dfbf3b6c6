package ws

import "time"

// Linger waits on the calling goroutine, for at most d, for the next data
// message to start arriving: it reports true when one did (WaitMessage then
// returns at once, and ReadMessage reads it), false when d passed first.
// Control frames that arrive meanwhile are handled, as WaitMessage does.
// The error is the one ReadMessage would return.
//
// It is for a server that parks its idle connections (Park): a client
// that sends its next message soon after the last is served by the
// goroutine already running, through the Go netpoller, where Park would
// register the connection with the parker and hand the message over to a
// wake goroutine. Connections that cannot be parked (no raw connection)
// answer false at once.
func (c *Conn) Linger(d time.Duration) (started bool, err error) {
	if c.raw == nil || d <= 0 {
		return false, nil
	}
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if c.readErr != nil || c.r.inMessage {
		return c.startMessageLocked() // no wait: nothing to set a deadline for
	}
	if err := c.nc.SetReadDeadline(time.Now().Add(d)); err != nil {
		return false, nil // closed: the next read reports it
	}
	c.r.deadlineSet = true
	// Read as WaitMessage does, each wait in one RawConn.Read with the
	// read attempt before it: a wait on its own would let the poller
	// forget a readiness that came after the last read.
	c.r.lingering = true
	started, err = c.startMessageLocked()
	c.r.lingering = false
	if !started {
		c.dropLingerDeadline()
	}
	return started, err
}

// dropLingerDeadline clears a read deadline Linger left pending, before a
// read that must not be cut short by it (the rest of a message, a parked
// connection's reads). Linger leaves its deadline set when a message
// arrived: the message is then usually read whole from the first read, and
// the next Linger sets a deadline anew, so that clearing it every time
// would cost a timer change per message for nothing.
func (c *Conn) dropLingerDeadline() {
	if c.r.deadlineSet {
		c.r.deadlineSet = false
		_ = c.nc.SetReadDeadline(time.Time{})
	}
}
