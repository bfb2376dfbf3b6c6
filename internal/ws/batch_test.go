package ws

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// batchModes are the two ways a Batch writes: through io_uring where the
// kernel allows it, and one write(2) each.
var batchModes = []struct {
	name     string
	oneByOne bool
}{{"ring", false}, {"one-by-one", true}}

// serverConns starts a server and n raw clients, and returns the server's
// connections in the clients' order; the handlers hold them until the
// test ends. The clients whose index is in deflate offer
// permessage-deflate.
func serverConns(t testing.TB, n int, deflate ...int) ([]*Conn, []*rawConn) {
	t.Helper()
	done := make(chan struct{})
	ts := startServer(t, echoOpts(), func(c *Conn) error {
		<-done
		return nil
	})
	t.Cleanup(func() { close(done) })
	var scs []*Conn
	var rcs []*rawConn
	for i := range n {
		offer := ""
		if slices.Contains(deflate, i) {
			offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
		}
		rcs = append(rcs, dialRaw(t, ts.addr, offer))
		scs = append(scs, ts.conn(t))
	}
	return scs, rcs
}

// recorder is a BatchWriter that keeps what it was told.
type recorder struct {
	calls    int
	complete bool
	err      error
}

func (r *recorder) BatchWritten(complete bool, err error) {
	r.calls++
	r.complete, r.err = complete, err
}

// addAll adds a text message to every connection, failing the test on a
// refusal, and returns the recorders of the writes.
func addAll(t *testing.T, b *Batch, scs []*Conn, text string) []recorder {
	t.Helper()
	recs := make([]recorder, len(scs))
	for i, sc := range scs {
		if added, err := b.Add(sc, &recs[i], NewPreparedMessage(Text, []byte(text))); !added || err != nil {
			t.Fatalf("conn %d: added %v err %v", i, added, err)
		}
	}
	return recs
}

// expectWritten fails the test unless connection i's writer was told
// once of a complete write, and its client then got text.
func expectWritten(t *testing.T, i int, r recorder, rc *rawConn, text string) {
	t.Helper()
	if r.calls != 1 || !r.complete || r.err != nil {
		t.Fatalf("conn %d told %+v", i, r)
	}
	if ev, err := rc.next(5 * time.Second); err != nil || string(ev.data) != text {
		t.Fatalf("conn %d got %v, %v", i, ev, err)
	}
}

// padding makes a message long enough to be compressed.
var padding = strings.Repeat(", and so on", 20)

// TestBatch: every write a Batch takes is made, to the right connection,
// in order, and its writer told once; over more connections than one
// submission takes, with single frames and frames copied into one buffer,
// compressed for the connections that negotiated it.
func TestBatch(t *testing.T) {
	t.Parallel()
	t.Logf("io_uring in use here: %v", BatchRing())
	for _, mode := range batchModes {
		for _, n := range []int{1, minRingBatch, 150} {
			t.Run(fmt.Sprintf("%s/%d", mode.name, n), func(t *testing.T) {
				t.Parallel()
				// Every third client negotiates compression, and the
				// first message of each round is long enough to be
				// compressed for it (CompressionThreshold).
				var deflate []int
				for i := 0; i < n; i += 3 {
					deflate = append(deflate, i)
				}
				scs, rcs := serverConns(t, n, deflate...)
				for i, sc := range scs {
					if sc.Compressed() != slices.Contains(deflate, i) {
						t.Fatalf("conn %d: compressed %v", i, sc.Compressed())
					}
				}
				b := &Batch{oneByOne: mode.oneByOne}
				recs := make([]recorder, n)
				for round := range 3 {
					for i, sc := range scs {
						pms := []*PreparedMessage{NewPreparedMessage(Text, fmt.Appendf(nil, "%d to %d%s", round, i, padding))}
						if i%2 == 1 {
							pms = append(pms, NewPreparedMessage(Binary, fmt.Appendf(nil, "and %d", i)))
						}
						if added, err := b.Add(sc, &recs[i], pms...); !added || err != nil {
							t.Fatalf("round %d, conn %d: added %v, err %v", round, i, added, err)
						}
					}
					if b.Len() != n {
						t.Fatalf("Len %d, want %d", b.Len(), n)
					}
					b.Submit()
					if b.Len() != 0 {
						t.Fatalf("Len %d after Submit", b.Len())
					}
					for i := range recs {
						if r := recs[i]; r.calls != round+1 || !r.complete || r.err != nil {
							t.Fatalf("round %d, conn %d told %+v", round, i, r)
						}
					}
				}
				for i, rc := range rcs {
					for round := range 3 {
						want := []string{fmt.Sprintf("%d to %d%s", round, i, padding)}
						if i%2 == 1 {
							want = append(want, fmt.Sprintf("and %d", i))
						}
						for _, w := range want {
							if ev, err := rc.next(5 * time.Second); err != nil || string(ev.data) != w {
								t.Fatalf("conn %d got %v, %v; want %q", i, ev, err, w)
							}
						}
					}
				}
			})
		}
	}
}

// TestBatchNotTaken: Add takes nothing where TryWritePrepared would not
// write: during another write, with bytes pending, on a client
// connection, for large frames not copied into one buffer; and returns
// the error of a connection that failed.
func TestBatchNotTaken(t *testing.T) {
	t.Parallel()
	scs, rcs := serverConns(t, 2)
	sc := scs[0]
	var b Batch
	var rec recorder
	pm := NewPreparedMessage(Text, []byte("x"))

	sc.writeMu.Lock() // a write in progress
	added, err := b.Add(sc, &rec, pm)
	sc.writeMu.Unlock()
	if added || err != nil {
		t.Fatalf("during another write: added %v err %v", added, err)
	}
	large := []*PreparedMessage{NewPreparedMessage(Binary, make([]byte, 10<<10)), NewPreparedMessage(Binary, make([]byte, 10<<10))}
	if added, err := b.Add(sc, &rec, large...); added || err != nil {
		t.Fatalf("large frames: added %v err %v", added, err)
	}
	if added, err := b.Add(sc, &rec); added || err != nil {
		t.Fatalf("no messages: added %v err %v", added, err)
	}
	sc.writeMu.Lock()
	sc.w.pend = [][]byte{[]byte("pending")}
	sc.writeMu.Unlock()
	if added, err := b.Add(sc, &rec, pm); added || err != nil {
		t.Fatalf("with bytes pending: added %v err %v", added, err)
	}
	sc.writeMu.Lock()
	sc.w.pend = nil
	sc.writeMu.Unlock()

	ts := startServer(t, echoOpts(), nil)
	c := dialTest(t, ts.wsURL(), nil)
	if added, err := b.Add(c, &rec, pm); added || err != nil {
		t.Fatalf("client connection: added %v err %v", added, err)
	}
	c.Close(StatusNormalClosure, "")

	// A write error is the connection's from then on.
	scs[1].writeMu.Lock()
	scs[1].writeErr = ErrClosed
	scs[1].writeMu.Unlock()
	if _, err := b.Add(scs[1], &rec, pm); err != ErrClosed {
		t.Fatalf("failed connection: err %v, want ErrClosed", err)
	}
	if b.Len() != 0 || rec.calls != 0 {
		t.Fatalf("Len %d, calls %d: something was taken", b.Len(), rec.calls)
	}
	_ = rcs
}

// TestBatchClosedBeforeSubmit: a connection closed after Add and before
// Submit gets an error, and the others' writes are made.
func TestBatchClosedBeforeSubmit(t *testing.T) {
	t.Parallel()
	for _, mode := range batchModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			scs, rcs := serverConns(t, 5)
			b := &Batch{oneByOne: mode.oneByOne}
			recs := addAll(t, b, scs, "hi")
			scs[2].CloseNow() // does not wait for the write lock
			b.Submit()
			for i := range recs {
				r := recs[i]
				if i == 2 {
					if r.calls != 1 || r.complete || r.err == nil {
						t.Fatalf("closed conn told %+v, want an error", r)
					}
					continue
				}
				expectWritten(t, i, r, rcs[i], "hi")
			}
		})
	}
}

// TestBatchFullSocket: with peers that stopped reading, writes end short
// (in part, or nothing when the socket is full); the rest is pending and
// Flush writes it, every frame whole and in order.
func TestBatchFullSocket(t *testing.T) {
	t.Parallel()
	for _, mode := range batchModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			const n = 4
			scs, rcs := serverConns(t, n)
			b := &Batch{oneByOne: mode.oneByOne}
			recs := make([]recorder, n)
			sent := make([][][]byte, n)
			full := make([]bool, n)
			for round := 0; round < 10000; round++ {
				for i, sc := range scs {
					if full[i] {
						continue
					}
					p := bytes.Repeat([]byte{byte('a' + round%26)}, 1000+round%3000)
					p[0], p[1] = byte(round), byte(round>>8)
					if added, err := b.Add(sc, &recs[i], NewPreparedMessage(Binary, p)); !added || err != nil {
						t.Fatalf("round %d conn %d: added %v err %v", round, i, added, err)
					}
					sent[i] = append(sent[i], p)
				}
				if b.Len() == 0 {
					break
				}
				b.Submit()
				for i := range recs {
					if !full[i] {
						if recs[i].err != nil {
							t.Fatalf("conn %d: %v", i, recs[i].err)
						}
						full[i] = !recs[i].complete
					}
				}
			}
			var wg sync.WaitGroup
			errs := make(chan error, 2*n)
			for i := range n {
				wg.Add(2)
				go func() {
					defer wg.Done()
					for j, want := range sent[i] {
						f, err := rcs[i].readFrame(10 * time.Second)
						if err != nil {
							errs <- fmt.Errorf("conn %d frame %d of %d: %v", i, j, len(sent[i]), err)
							return
						}
						if !bytes.Equal(f.payload, want) {
							errs <- fmt.Errorf("conn %d frame %d differs", i, j)
							return
						}
					}
				}()
				go func() {
					defer wg.Done()
					if !full[i] {
						errs <- fmt.Errorf("conn %d never filled up", i)
						return
					}
					if err := scs[i].Flush(); err != nil {
						errs <- fmt.Errorf("conn %d Flush: %v", i, err)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// TestSetBatchRing: with the ring turned off, batches write one by one
// (and still write); turned on again, the ring is back where the kernel
// allows it. Not parallel: the setting is the process's.
func TestSetBatchRing(t *testing.T) {
	had := BatchRing()
	SetBatchRing(false)
	defer SetBatchRing(true)
	if BatchRing() {
		t.Fatal("BatchRing is true with the ring turned off")
	}
	scs, rcs := serverConns(t, 2*minRingBatch)
	b := new(Batch)
	recs := addAll(t, b, scs, "off")
	b.Submit()
	for i, rc := range rcs {
		expectWritten(t, i, recs[i], rc, "off")
	}
	SetBatchRing(true)
	if BatchRing() != had {
		t.Fatalf("BatchRing %v after turning the ring on again, %v before", BatchRing(), had)
	}
}

// TestBatchPeerReset: a write to a connection its peer reset fails, with
// the socket's error, and is that connection's error from then on; the
// other writes of the batch are made.
func TestBatchPeerReset(t *testing.T) {
	t.Parallel()
	for _, mode := range batchModes {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			scs, rcs := serverConns(t, 2*minRingBatch)
			const reset = 1
			rcs[reset].nc.(*net.TCPConn).SetLinger(0)
			rcs[reset].nc.Close() // an RST, which loopback delivers at once
			b := &Batch{oneByOne: mode.oneByOne}
			recs := addAll(t, b, scs, "after")
			b.Submit()
			for i, r := range recs {
				if i == reset {
					if r.calls != 1 || r.complete || !errors.Is(r.err, syscall.ECONNRESET) {
						t.Fatalf("reset conn told %+v, want ECONNRESET", r)
					}
					if _, err := b.Add(scs[i], &recs[i], NewPreparedMessage(Text, []byte("again"))); err == nil {
						t.Fatal("no error from the next Add")
					}
					continue
				}
				expectWritten(t, i, r, rcs[i], "after")
			}
		})
	}
}
