package ws

// Batch makes non-blocking writes of prepared messages to many server
// connections together, for a fan-out: on Linux through io_uring, one
// system call for up to 32 writes (batchRingSize) where TryWritePrepared makes
// one each. Elsewhere, or where io_uring cannot be used (an older kernel,
// a seccomp filter such as a container runtime's default), Submit makes
// one write(2) each, as TryWritePrepared does.
//
// On a loopback or LAN fan-out nearly all of a server's CPU goes into the
// kernel's side of those writes; entering the kernel once per write, and
// the Go scheduler's bookkeeping around it, is about a fifth of it on a
// virtual machine (BenchmarkBatch, docs/performance.md).
//
// Add takes a write and Submit makes them; between the two the connections
// added are locked for writing, so a Batch must be submitted at once, by
// the goroutine that added to it, with no wait in between: in particular
// no blocking write to any connection, which another goroutine's batch
// may hold while it waits for one of this one's. The zero Batch is ready
// to use; a Batch is reusable after Submit.
type Batch struct {
	entries []batchEntry

	// The chain of descriptor references that submitRing builds (see
	// uring_linux.go): entries[start:end] are the writes of one ring
	// submission, entries[next] the next to take a reference on.
	start, next, end int
	ring             *ring
	stepFn           func(fd uintptr)

	// oneByOne makes Submit write one by one even where a ring is to be
	// had, so that tests can compare the two ways.
	oneByOne bool
}

// BatchWriter learns how the write it gave a Batch went.
type BatchWriter interface {
	// BatchWritten is called once for every write Add took, by Submit,
	// on its goroutine, with the connection no longer locked. It means
	// what TryWritePrepared's results mean when taken is true: complete
	// when the socket took all of it; otherwise, with a nil err, the
	// rest is pending until Flush (or another write) writes it, which the
	// writer must see to from a goroutine that may block.
	BatchWritten(complete bool, err error)
}

type batchEntry struct {
	c     *Conn
	w     BatchWriter
	frame []byte
	bufp  *[]byte // the pooled buffer frame was coalesced into, if any
	fd    int32
	// The outcome: done once the write was made (or could not be), then
	// n bytes written, or err.
	done bool
	n    int
	err  error
}

// Add takes a non-blocking write of pms to c, to be made by Submit, and
// reports whether it took it. It does not when TryWritePrepared would not
// (c is not a server TCP connection, another write is in progress, or
// something is still pending), or when pms are large frames that are not
// copied into one buffer: then write them with TryWritePrepared or
// WritePrepared. err is c's write error, when it has one; nothing was
// taken then. A connection is taken once per submission: it stays locked
// for writing until Submit, so a second Add is refused, and a blocking
// write to it before Submit would wait for ever.
func (b *Batch) Add(c *Conn, w BatchWriter, pms ...*PreparedMessage) (added bool, err error) {
	if len(pms) == 0 {
		return false, nil
	}
	if locked, err := c.tryLockWrite(pms); !locked {
		return false, err
	}
	e := batchEntry{c: c, w: w}
	if e.frame, e.bufp = c.oneFrame(pms); e.frame == nil {
		c.writeMu.Unlock()
		return false, nil
	}
	// writeMu stays locked until Submit.
	b.entries = append(b.entries, e)
	return true, nil
}

// Len is the number of writes taken and not yet submitted.
func (b *Batch) Len() int { return len(b.entries) }

// Submit makes the writes taken and tells each writer how its write went.
func (b *Batch) Submit() {
	if len(b.entries) == 0 {
		return
	}
	if !b.oneByOne && len(b.entries) >= minRingBatch {
		b.submitRing()
	}
	// Whatever the ring did not make (no ring, a broken one, an error
	// other than a full socket, which write(2) then reports): one by one.
	b.writeEach()
	for i := range b.entries {
		e := &b.entries[i]
		complete, err := e.c.settleLocked(e.frame, e.bufp, e.n, e.err)
		e.c.writeMu.Unlock()
		e.w.BatchWritten(complete, err)
	}
	clear(b.entries)
	b.entries = b.entries[:0]
}

// writeEach makes the writes that are not done yet one write(2) each.
func (b *Batch) writeEach() {
	for i := range b.entries {
		e := &b.entries[i]
		if !e.done {
			e.n, e.err = e.c.tryWrite(e.frame)
			e.done = true
		}
	}
}
