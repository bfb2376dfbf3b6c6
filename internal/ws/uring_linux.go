package ws

import (
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// This file makes a Batch's writes through io_uring (io_uring_setup(2),
// io_uring_enter(2)): one IORING_OP_SEND per write, a ring's worth
// submitted and completed in one system call.
//
// Every send carries MSG_DONTWAIT, so that the kernel makes it during the
// submission and completes it there, or fails it with EAGAIN, rather than
// waiting for the socket (kernels since 5.x mark such requests
// REQ_F_NOWAIT; we require 6.3's features, below). So when io_uring_enter
// returns, every write is done: its buffer and its descriptor are free
// again. While a submission is made, the goroutine holds a reference on
// every connection's descriptor (RawConn.Control, nested), so that none
// can be closed, and its number reused, under it.

const (
	sysIOUringSetup = 425 // the same number on every architecture
	sysIOUringEnter = 426

	opSend         = 26 // IORING_OP_SEND
	enterGetEvents = 1  // IORING_ENTER_GETEVENTS

	setupSubmitAll   = 1 << 7 // IORING_SETUP_SUBMIT_ALL: one bad entry does not stop the rest
	setupCoopTaskrun = 1 << 8 // IORING_SETUP_COOP_TASKRUN: no interrupt for task work

	featSingleMmap = 1 << 0
	featNoDrop     = 1 << 1
	featRegRegRing = 1 << 13 // Linux 6.3: the newest feature we rely on being there

	offSQEs = 0x10000000 // IORING_OFF_SQES
)

// batchRingSize is how many writes one submission takes. Each holds a
// descriptor reference, about 300 bytes of the goroutine's stack while
// the submission is made (nested RawConn.Control calls); nearly all of
// the system calls are saved by 32 already (one per 32 sends instead of
// 32), and larger submissions measured no cheaper per write.
const batchRingSize = 32

// minRingBatch is the fewest writes worth a ring: for one or two, a
// write(2) each costs no more.
const minRingBatch = 3

type sqOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqOffsets
	cqOff                                                                  cqOffsets
}

// sqe is struct io_uring_sqe, as IORING_OP_SEND uses it.
type sqe struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	msgFlags    uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFdIn  int32
	addr3       uint64
	pad         uint64
}

// cqe is struct io_uring_cqe.
type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// ring is one io_uring instance, used by one submitter at a time (the
// pool hands it out).
type ring struct {
	fd             int
	ringMem        []byte
	sqeMem         []byte
	sqHead, sqTail *uint32
	sqMask         uint32
	sqes           []sqe
	cqHead, cqTail *uint32
	cqMask         uint32
	cqes           []cqe
	size           int
	// broken is set when a submission failed in a way a retry will not
	// mend; the ring is then never used again.
	broken bool
}

func newRing(entries int) (*ring, error) {
	var p uringParams
	p.flags = setupSubmitAll | setupCoopTaskrun
	fd, _, errno := syscall.Syscall(sysIOUringSetup, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, errno
	}
	r := &ring{fd: int(fd)}
	const need = featSingleMmap | featNoDrop | featRegRegRing
	if p.features&need != need {
		_ = syscall.Close(r.fd)
		return nil, syscall.ENOSYS
	}
	size := max(p.sqOff.array+p.sqEntries*4, p.cqOff.cqes+p.cqEntries*uint32(unsafe.Sizeof(cqe{})))
	var err error
	r.ringMem, err = syscall.Mmap(r.fd, 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_POPULATE)
	if err != nil {
		_ = syscall.Close(r.fd)
		return nil, err
	}
	r.sqeMem, err = syscall.Mmap(r.fd, offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(sqe{})), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_POPULATE)
	if err != nil {
		_ = syscall.Munmap(r.ringMem)
		_ = syscall.Close(r.fd)
		return nil, err
	}
	m := r.ringMem
	r.sqHead = (*uint32)(unsafe.Pointer(&m[p.sqOff.head]))
	r.sqTail = (*uint32)(unsafe.Pointer(&m[p.sqOff.tail]))
	r.sqMask = *(*uint32)(unsafe.Pointer(&m[p.sqOff.ringMask]))
	r.cqHead = (*uint32)(unsafe.Pointer(&m[p.cqOff.head]))
	r.cqTail = (*uint32)(unsafe.Pointer(&m[p.cqOff.tail]))
	r.cqMask = *(*uint32)(unsafe.Pointer(&m[p.cqOff.ringMask]))
	r.sqes = unsafe.Slice((*sqe)(unsafe.Pointer(&r.sqeMem[0])), p.sqEntries)
	r.cqes = unsafe.Slice((*cqe)(unsafe.Pointer(&m[p.cqOff.cqes])), p.cqEntries)
	// The submission queue's index array maps slot i to entry i, once.
	array := unsafe.Slice((*uint32)(unsafe.Pointer(&m[p.sqOff.array])), p.sqEntries)
	for i := range array {
		array[i] = uint32(i)
	}
	r.size = min(entries, int(p.sqEntries))
	return r, nil
}

// send submits the writes of entries that are not done yet and waits for
// their completions, which the kernel posts during the submission (see
// the top of this file). A write the ring could not make, for any reason
// but a full socket, is left not done, for write(2) to make and report.
func (r *ring) send(entries []batchEntry) {
	tail := atomic.LoadUint32(r.sqTail)
	n := 0
	for i := range entries {
		e := &entries[i]
		if e.done {
			continue
		}
		r.sqes[(tail+uint32(n))&r.sqMask] = sqe{
			opcode:   opSend,
			fd:       e.fd,
			addr:     uint64(uintptr(unsafe.Pointer(unsafe.SliceData(e.frame)))),
			len:      uint32(len(e.frame)),
			msgFlags: syscall.MSG_DONTWAIT | syscall.MSG_NOSIGNAL,
			userData: uint64(i),
		}
		n++
	}
	if n == 0 {
		return
	}
	atomic.StoreUint32(r.sqTail, tail+uint32(n))
	submitted, reaped, stuck := 0, 0, 0
	for reaped < n {
		got, _, errno := syscall.Syscall6(sysIOUringEnter, uintptr(r.fd), uintptr(n-submitted), uintptr(n-reaped), enterGetEvents, 0, 0)
		switch errno {
		case 0:
			submitted += int(got)
		case syscall.EINTR, syscall.EAGAIN, syscall.EBUSY:
			// Interrupted, or short of resources for now: reap what
			// completed and try again.
		default:
			r.broken = true
		}
		m := r.reap(entries)
		reaped += m
		if m == 0 && (errno != 0 || got == 0) {
			stuck++
		}
		if r.broken || stuck > 100 {
			// Entries submitted and not completed could still be in
			// the kernel's hands: this ring is never used (or closed)
			// again. Those not submitted go by write(2).
			r.broken = true
			break
		}
	}
	runtime.KeepAlive(entries)
}

// reap records the completions posted and returns how many there were.
func (r *ring) reap(entries []batchEntry) int {
	head := atomic.LoadUint32(r.cqHead)
	tail := atomic.LoadUint32(r.cqTail)
	n := 0
	for ; head != tail; head++ {
		c := r.cqes[head&r.cqMask]
		e := &entries[c.userData]
		switch {
		case c.res >= 0:
			e.n, e.done = int(c.res), true
		case c.res == -int32(syscall.EAGAIN):
			e.n, e.done = 0, true // the socket is full
		case connectionError(syscall.Errno(-c.res)):
			// The socket reports its error once: this is the one.
			e.err, e.done = os.NewSyscallError("write", syscall.Errno(-c.res)), true
		}
		n++
	}
	atomic.StoreUint32(r.cqHead, head)
	return n
}

// connectionError reports whether errno is the connection's own failure,
// which write(2) would have returned too; any other error of a send in
// the ring is left for write(2) to make again and report.
func connectionError(errno syscall.Errno) bool {
	switch errno {
	case syscall.ECONNRESET, syscall.EPIPE, syscall.ETIMEDOUT, syscall.EHOSTUNREACH,
		syscall.ENETUNREACH, syscall.ENOTCONN, syscall.ECONNABORTED:
		return true
	}
	return false
}

// rings is the pool of rings: at most a few per P, made as fan-outs need
// them and kept for the life of the process (a ring is a descriptor and
// two small mappings).
var rings struct {
	sync.Mutex
	free []*ring
	made int
	// off is set when io_uring is disabled (SetBatchRing) or cannot be
	// set up here: batches then write one by one.
	off bool
}

// SetBatchRing turns the use of io_uring by Batch on or off (it is on
// where the kernel allows it). Off, a Batch makes one write(2) per write.
func SetBatchRing(on bool) {
	rings.Lock()
	rings.off = !on
	rings.Unlock()
}

// BatchRing reports whether Batch uses io_uring: it is on, and a ring
// could be set up (it tries, the first time).
func BatchRing() bool {
	r := getRing()
	if r == nil {
		return false
	}
	putRing(r)
	return true
}

func getRing() *ring {
	rings.Lock()
	if rings.off {
		rings.Unlock()
		return nil
	}
	if n := len(rings.free); n > 0 {
		r := rings.free[n-1]
		rings.free = rings.free[:n-1]
		rings.Unlock()
		return r
	}
	if rings.made >= 4*runtime.GOMAXPROCS(0) {
		rings.Unlock()
		return nil
	}
	rings.made++
	rings.Unlock()
	r, err := newRing(batchRingSize)
	if err != nil {
		rings.Lock()
		rings.made--
		// ENOMEM and EMFILE pass; anything else (ENOSYS, EPERM from a
		// seccomp filter, EINVAL from an old kernel) will not.
		if err != syscall.ENOMEM && err != syscall.EMFILE && err != syscall.ENFILE {
			rings.off = true
		}
		rings.Unlock()
		return nil
	}
	return r
}

func putRing(r *ring) {
	if r.broken {
		return
	}
	rings.Lock()
	rings.free = append(rings.free, r)
	rings.Unlock()
}

// submitRing makes the batch's writes through a ring, a submission per
// batchRingSize writes, when a ring is to be had. Writes a ring could not
// make are left not done.
func (b *Batch) submitRing() {
	r := getRing()
	if r == nil {
		return
	}
	if b.stepFn == nil {
		b.stepFn = b.step
	}
	b.ring = r
	for b.start = 0; b.start < len(b.entries) && !r.broken; b.start = b.end {
		b.end = min(b.start+r.size, len(b.entries))
		b.next = b.start
		b.chain()
	}
	b.ring = nil
	putRing(r)
}

// chain takes a reference on the descriptor of the next entry of the
// submission and goes on, under it, with the one after (step); past the
// last, it submits. A connection closed already is done with the error
// RawConn.Control gave.
func (b *Batch) chain() {
	for b.next < b.end {
		e := &b.entries[b.next]
		b.next++
		err := e.c.raw.Control(b.stepFn)
		if err == nil {
			return // step went on, and submitted, under the reference
		}
		e.err, e.done = err, true
	}
	b.ring.send(b.entries[b.start:b.end])
}

// step is the RawConn.Control callback of chain.
func (b *Batch) step(fd uintptr) {
	b.entries[b.next-1].fd = int32(fd)
	b.chain()
}
