//go:build linux

package ws

import (
	"testing"
	"time"
)

// lingerResult is what a server connection's Linger returned, and what
// the server read after it.
type lingerResult struct {
	started bool
	err     error
	msg     string // the message read after the linger (with WaitMessage when it returned false)
	readErr error
}

// lingerServer starts a server whose connections linger for d, then read
// one message (waiting on as usual when the linger ended without one); the
// test gets the result of each connection.
func lingerServer(t *testing.T, d time.Duration) (addr string, results chan lingerResult) {
	t.Helper()
	results = make(chan lingerResult, 8)
	ts := startServer(t, echoOpts(), func(c *Conn) error {
		var res lingerResult
		res.started, res.err = c.Linger(d)
		if res.err == nil {
			var msg []byte
			_, msg, res.readErr = c.ReadMessage(nil)
			res.msg = string(msg)
		}
		results <- res
		return nil
	})
	return ts.addr, results
}

func nextLinger(t *testing.T, results chan lingerResult) lingerResult {
	t.Helper()
	select {
	case r := <-results:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the server's linger never ended")
		return lingerResult{}
	}
}

// TestLinger: a message that comes within the linger is read by it; one
// that comes later is read by an ordinary read after it, with no deadline
// left over from the linger, also when the message's first frame came
// within the linger and its last one after; a ping is answered while
// lingering; a close ends the linger with the close.
func TestLinger(t *testing.T) {
	t.Parallel()
	const d = 100 * time.Millisecond
	tests := []struct {
		name    string
		client  func(rc *rawConn)
		started bool
		msg     string
		code    StatusCode // of the linger's error, 0 for none
	}{
		{
			name:    "message within",
			client:  func(rc *rawConn) { rc.send(fText("soon")) },
			started: true,
			msg:     "soon",
		},
		{
			name: "message after",
			client: func(rc *rawConn) {
				time.Sleep(3 * d)
				rc.send(fText("late"))
			},
			msg: "late",
		},
		{
			name: "first frame within, last frame after",
			client: func(rc *rawConn) {
				rc.send(frag(opTxt, false, []byte("slow ")))
				time.Sleep(3 * d)
				rc.send(frag(opCont, true, []byte("message")))
			},
			started: true,
			msg:     "slow message",
		},
		{
			name: "header within, payload after",
			client: func(rc *rawConn) {
				b := fText("split header").encode()
				rc.write(b[:3])
				time.Sleep(3 * d)
				rc.write(b[3:])
			},
			started: true,
			msg:     "split header",
		},
		{
			name: "ping within, message after",
			client: func(rc *rawConn) {
				rc.send(fPing("p"))
				f, err := rc.readFrame(5 * time.Second)
				if err != nil || f.op != opPog || string(f.payload) != "p" {
					t.Errorf("answer to the ping: %+v, %v; want its pong", f, err)
				}
				time.Sleep(3 * d)
				rc.send(fText("after ping"))
			},
			msg: "after ping",
		},
		{
			name:   "close within",
			client: func(rc *rawConn) { rc.send(fClose(1000, "bye")) },
			code:   StatusNormalClosure,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr, results := lingerServer(t, d)
			rc := dialRaw(t, addr, "")
			tt.client(rc)
			r := nextLinger(t, results)
			if tt.code != 0 {
				if got := CloseStatus(r.err); got != tt.code {
					t.Fatalf("linger ended with %v, want close %v", r.err, tt.code)
				}
				return
			}
			if r.err != nil || r.readErr != nil {
				t.Fatalf("linger: %v; read after it: %v", r.err, r.readErr)
			}
			if r.started != tt.started || r.msg != tt.msg {
				t.Fatalf("linger started %v, then read %q; want %v, %q", r.started, r.msg, tt.started, tt.msg)
			}
		})
	}
}

// TestLingerThenPark: a connection that lingered with success and was
// parked after serving its message is not failed by the linger's deadline
// passing while it is parked.
func TestLingerThenPark(t *testing.T) {
	t.Parallel()
	const d = 50 * time.Millisecond
	type outcome struct {
		msgs []string
		err  error
	}
	got := make(chan outcome, 1)
	ts := startServer(t, echoOpts(), func(c *Conn) error {
		var o outcome
		started, err := c.Linger(d)
		if err == nil && started {
			var msg []byte
			if _, msg, err = c.ReadMessage(nil); err == nil {
				o.msgs = append(o.msgs, string(msg))
			}
		}
		if err != nil {
			o.err = err
			got <- o
			return err
		}
		resumed := make(chan struct{})
		if !c.Park(func() { close(resumed) }) {
			close(resumed)
		}
		<-resumed
		_, msg, err := c.ReadMessage(nil)
		o.msgs, o.err = append(o.msgs, string(msg)), err
		got <- o
		return err
	})

	rc := dialRaw(t, ts.addr, "")
	rc.send(fText("first"))
	time.Sleep(4 * d) // the linger's deadline passes while parked
	rc.send(fText("second"))
	var o outcome
	within(t, 10*time.Second, "the parked connection's read", func() { o = <-got })
	if o.err != nil || len(o.msgs) != 2 || o.msgs[0] != "first" || o.msgs[1] != "second" {
		t.Fatalf("read %q, %v; want first and second", o.msgs, o.err)
	}
}

// TestLingerClosed: a connection closed (CloseNow) while it lingers ends
// the linger at once, with the error a read would return: an abnormal
// closure.
func TestLingerClosed(t *testing.T) {
	t.Parallel()
	errs := make(chan error, 1)
	ts := startServer(t, echoOpts(), func(c *Conn) error {
		_, err := c.Linger(time.Minute)
		errs <- err
		return err
	})
	_ = dialRaw(t, ts.addr, "")
	c := ts.conn(t)
	time.Sleep(50 * time.Millisecond) // let it start waiting
	c.CloseNow()
	var err error
	within(t, 10*time.Second, "the closed connection's linger", func() { err = <-errs })
	if CloseStatus(err) != StatusAbnormalClosure {
		t.Fatalf("linger of a closed connection ended with %v, want an abnormal closure", err)
	}
}
