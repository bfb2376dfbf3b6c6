package server

import (
	"context"
	"errors"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/chatd/chatd/internal/auth"
	"github.com/chatd/chatd/internal/hub"
	"github.com/chatd/chatd/internal/protocol"
	"github.com/chatd/chatd/internal/ratelimit"
	"github.com/chatd/chatd/internal/ws"
)

// Close codes of PROTOCOL.md §6 that are chatd's own.
const (
	closeTokenExpired ws.StatusCode = 4001
	closeTokenInvalid ws.StatusCode = 4003
)

// brokerTimeout bounds one broker call made for a command.
const brokerTimeout = 5 * time.Second

// brokerContext bounds the broker and user-limiter calls of a command by
// brokerTimeout. When none of them can wait (the in-memory broker and the
// local limiter answer at once), it returns ctx itself: a bound would
// cost a timer and a context per command, and never fire.
func (s *Server) brokerContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if !s.brokerWaits {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, brokerTimeout)
}

// session is one client connection speaking the chat protocol. Its
// commands are read and handled in order by readLoop, on a goroutine that
// exists only while something arrived: between commands the connection is
// parked. Frames for the client are queued, and written by whoever queued
// them as long as the socket takes them at once (Flush); a writer
// goroutine exists only while the client is behind. So an idle connection
// costs no goroutine and no buffer.
type session struct {
	srv  *Server
	conn *ws.Conn
	id   string

	// Owned by the reading goroutine.
	claims  *auth.Claims
	member  protocol.Member
	rooms   roomSet
	sendLim ratelimit.Bucket
	cmdLim  ratelimit.Bucket
	strikes ratelimit.Strikes

	// roomsBuf backs rooms while the connection is in at most one room,
	// the common case: no allocation for it.
	roomsBuf [1]string

	expiry *time.Timer // closes with 4001 when the token expires

	// The outbound queue: a ring of prepared frames, guarded by qmu. It
	// starts in small, grows up to qmax when the client falls behind, and
	// goes back to small once written.
	qmu sync.Mutex
	// qroom, made by a reader waiting for room in the queue, is closed
	// (and reset) when the queue shrinks or closing is set.
	qroom      chan struct{}
	queue      []*ws.PreparedMessage
	small      [2]*ws.PreparedMessage
	qmax       int
	qhead      int
	qlen       int
	writing    bool          // a writer owns the queue (see write)
	closing    bool          // a close was decided; nothing more is queued
	closeCode  ws.StatusCode // the close the writer sends after the queue
	closeText  string
	writerDone sync.WaitGroup // counts the writer while writing is set
	// inflight is the batch of frames a ws.Batch is writing (see Flush);
	// the writer's own.
	inflight *[]*ws.PreparedMessage

	resume     func() // readLoop, bound once: Park's argument
	lingerLeft int8   // commands readLoop still lingers for; the reader's own
}

// newSession makes the session of a connection that was greeted with
// member (see handleWS).
func newSession(srv *Server, conn *ws.Conn, id string, claims *auth.Claims, member protocol.Member) *session {
	cfg := &srv.cfg
	s := &session{
		srv:     srv,
		conn:    conn,
		id:      id,
		claims:  claims,
		member:  member,
		sendLim: ratelimit.NewBucket(cfg.SendRate, cfg.SendBurst),
		cmdLim:  ratelimit.NewBucket(cfg.CommandRate, cfg.CommandBurst),
		strikes: ratelimit.NewStrikes(cfg.AbuseStrikes, cfg.AbuseWindow),
		qmax:    cfg.QueueSize,

		lingerLeft: lingerCommands,
	}
	s.queue = s.small[:min(len(s.small), s.qmax)]
	s.rooms = s.roomsBuf[:0]
	s.resume = s.readLoop
	return s
}

// logAt starts a log event at level with the connection's fields. A
// logger with those fields built once per connection would cost every
// idle connection its bytes; events are rare, and free when the level is
// off (nil events do nothing).
func (s *session) logAt(level zerolog.Level) *zerolog.Event {
	return s.srv.log.WithLevel(level).Str("conn", s.id).Str("user", s.member.User)
}

// roomSet is the rooms a connection is in: a slice rather than a map,
// because a connection is in few rooms (at most MaxRooms, 256 by default,
// where a scan still costs well under a microsecond) and an empty map
// with its first group costs every connection about 200 bytes.
type roomSet []string

func (rs roomSet) has(room string) bool { return slices.Contains(rs, room) }

func (rs *roomSet) add(room string) {
	if !rs.has(room) {
		*rs = append(*rs, room)
	}
}

func (rs *roomSet) remove(room string) {
	if i := slices.Index(*rs, room); i >= 0 {
		*rs = slices.Delete(*rs, i, i+1)
	}
}

func displayName(c *auth.Claims) string {
	if c.Name != "" {
		return c.Name
	}
	return c.Subject
}

// UserID implements hub.Conn.
func (s *session) UserID() string { return s.member.User }

// Send implements hub.Conn: it queues a frame; it never blocks and does
// no I/O, so the hub calls it under its locks. It reports whether the
// caller must call Flush to have the frame written (no writer is at work).
// Droppable events are dropped once the queue is half full; a full queue
// means the client stopped reading, and it is closed with 1013 (it
// reconnects and recovers with since).
func (s *session) Send(pm *ws.PreparedMessage, droppable bool) bool {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if s.closing {
		return false
	}
	if droppable && s.qlen >= s.qmax/2 {
		s.srv.metrics.queueDrops.Inc()
		return false
	}
	if s.qlen == s.qmax {
		s.srv.metrics.slowConsumers.Inc()
		s.logAt(zerolog.WarnLevel).Int("queue", s.qlen).Msg("slow consumer: outbound queue full, closing with 1013")
		// What is queued will not be read in time; the client recovers it.
		clear(s.queue)
		s.qhead, s.qlen = 0, 0
		s.closeLocked(ws.StatusTryAgainLater, "slow consumer: outbound queue full")
		return false
	}
	if s.qlen == len(s.queue) {
		s.growLocked()
	}
	s.queue[(s.qhead+s.qlen)%len(s.queue)] = pm
	s.qlen++
	return !s.writing
}

// growLocked doubles the ring, up to qmax, keeping the order.
func (s *session) growLocked() {
	q := make([]*ws.PreparedMessage, min(max(2*len(s.queue), 8), s.qmax))
	for i := 0; i < s.qlen; i++ {
		q[i] = s.queue[(s.qhead+i)%len(s.queue)]
	}
	s.queue, s.qhead = q, 0
}

// replyOverhead is what a short reply (left, sent, pong) takes besides
// its string values: its encoding is allocated at once with that much
// room, where appending to nil would grow it three or four times.
const replyOverhead = 64

// replyBuffer is a buffer to encode a reply of about n bytes into, by
// appending to it: behind the headroom in which reply frames it.
func replyBuffer(n int) []byte {
	return make([]byte, ws.PreparedHeadroom, ws.PreparedHeadroom+n)
}

// reply queues a frame for this client and writes it. buf is a reply
// encoded after the headroom of a replyBuffer, framed in place.
func (s *session) reply(buf []byte) {
	if s.Send(ws.NewPreparedMessageInPlace(ws.Text, buf), false) {
		s.Flush(nil)
	}
}

// Flush implements hub.Conn: it writes what is queued, on the caller's
// goroutine as long as the socket takes it at once; it never waits for
// the client (see write). With a batch, the first write is left to it
// (BatchWritten goes on from there).
func (s *session) Flush(batch *ws.Batch) {
	s.qmu.Lock()
	if s.writing || s.qlen == 0 {
		// A writer is at work and writes what was queued before it
		// ends, or nothing is queued (a close decided with an empty queue
		// started its own writer).
		s.qmu.Unlock()
		return
	}
	s.writing = true
	s.writerDone.Add(1)
	if batch == nil {
		s.qmu.Unlock()
		s.write(false)
		return
	}
	bp := batchPool.Get().(*[]*ws.PreparedMessage)
	s.takeLocked(bp)
	s.qmu.Unlock()
	s.inflight = bp
	added, err := batch.Add(s.conn, s, *bp...)
	if added {
		return
	}
	s.inflight = nil
	taken, complete := false, false
	if err == nil {
		taken, complete, err = s.conn.TryWritePrepared(*bp...)
	}
	if s.wrote(bp, taken, complete, err) {
		s.writeWith(bp, false)
	}
}

// BatchWritten implements ws.BatchWriter, for the write Flush left to a
// batch: the writer goes on from there.
func (s *session) BatchWritten(complete bool, err error) {
	bp := s.inflight
	s.inflight = nil
	if s.wrote(bp, true, complete, err) {
		s.writeWith(bp, false)
	}
}

// startClose decides to close the connection with code once what is
// queued has been written.
func (s *session) startClose(code ws.StatusCode, reason string) {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	s.closeLocked(code, reason)
}

func (s *session) closeLocked(code ws.StatusCode, reason string) {
	if s.closing {
		return
	}
	s.closing, s.closeCode, s.closeText = true, code, reason
	s.srv.metrics.closes.WithLabelValues(strconv.Itoa(int(code))).Inc()
	s.wakeQueueWaiterLocked()
	if !s.writing {
		// The closing handshake waits for the client: a goroutine's work.
		s.writing = true
		s.writerDone.Add(1)
		go s.write(true)
	}
}

// awaitQueueRoom blocks the reading goroutine while the outbound queue
// has less than its headroom free. A client that sends commands faster
// than it reads the replies (pipelining) is slowed down through TCP
// instead of filling its own queue, so that only a client that does not
// keep up with what its rooms deliver is a slow consumer; and the next
// command's replies find room. The headroom is small (an eighth of the
// queue): a client that merely lags behind a busy room keeps being read,
// its commands served and its pongs seen. A client that stops reading
// altogether is failed by the write timeout, which wakes this.
func (s *session) awaitQueueRoom() {
	limit := s.qmax - max(s.qmax/8, 4)
	s.qmu.Lock()
	for s.qlen > limit && !s.closing {
		if s.qroom == nil {
			s.qroom = make(chan struct{})
		}
		wait := s.qroom
		s.qmu.Unlock()
		<-wait
		s.qmu.Lock()
	}
	s.qmu.Unlock()
}

// wakeQueueWaiterLocked wakes the reader waiting in awaitQueueRoom, if
// it waits.
func (s *session) wakeQueueWaiterLocked() {
	if s.qroom != nil {
		close(s.qroom)
		s.qroom = nil
	}
}

func (s *session) isClosing() bool {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	return s.closing
}

// maxBatch is the most frames one write takes from the queue.
const maxBatch = 64

// batchPool holds the writers' batches: only a connection being written
// to holds one.
var batchPool = sync.Pool{New: func() any { b := make([]*ws.PreparedMessage, 0, maxBatch); return &b }}

// write writes queued frames in batches (one write system call each)
// until the queue is empty, then ends; if a close was decided, it sends it
// last. It runs while s.writing is set, which makes it the queue's only
// writer and owner of one writerDone count.
//
// With mayBlock false it runs on the goroutine that queued the frames (a
// fan-out, or the session's reader) and never waits for the client: the
// first batch the socket does not take at once, in whole or in part, is
// handed to a writer goroutine, which may wait (up to the write timeout)
// and carries on with the queue. So a delivery to a client that keeps up
// costs one write and no goroutine, and a slow client delays nobody else.
func (s *session) write(mayBlock bool) {
	s.writeWith(batchPool.Get().(*[]*ws.PreparedMessage), mayBlock)
}

// writeWith is write with bp, an empty batch from batchPool, to take the
// queue's frames into.
func (s *session) writeWith(bp *[]*ws.PreparedMessage, mayBlock bool) {
	for {
		s.qmu.Lock()
		if s.qlen == 0 {
			closing, code, text := s.closing, s.closeCode, s.closeText
			if !closing {
				s.writing = false
				s.queue, s.qhead = s.small[:min(len(s.small), s.qmax)], 0
				s.qmu.Unlock()
				batchPool.Put(bp)
				s.writerDone.Done()
				return
			}
			s.qmu.Unlock()
			batchPool.Put(bp)
			if !mayBlock {
				go s.write(true)
				return
			}
			// Waits for the client's close frame, read by the session's
			// reading goroutine, up to the close timeout. writing stays
			// set: nothing is written after a close.
			_ = s.conn.Close(code, text)
			s.writerDone.Done()
			return
		}
		s.takeLocked(bp)
		s.qmu.Unlock()

		taken, complete, err := true, true, error(nil)
		if mayBlock {
			err = s.conn.WritePrepared(*bp...)
		} else {
			taken, complete, err = s.conn.TryWritePrepared(*bp...)
		}
		if !s.wrote(bp, taken, complete, err) {
			return
		}
	}
}

// takeLocked moves up to maxBatch frames from the head of the queue into
// bp.
func (s *session) takeLocked(bp *[]*ws.PreparedMessage) {
	n := min(s.qlen, maxBatch)
	batch := (*bp)[:0]
	for i := 0; i < n; i++ {
		j := (s.qhead + i) % len(s.queue)
		batch = append(batch, s.queue[j])
		s.queue[j] = nil
	}
	*bp = batch
	s.qhead = (s.qhead + n) % len(s.queue)
	s.qlen -= n
	s.wakeQueueWaiterLocked()
}

// wrote deals with the outcome of a write of the batch in bp (as
// TryWritePrepared reports it; a blocking write is taken and complete
// unless it failed) and reports whether the writer goes on with the
// queue, with bp emptied for the next batch. Otherwise bp is handed on,
// or back to its pool: the batch the socket did not take at once, in
// whole or in part, goes to a writer goroutine, which may wait.
func (s *session) wrote(bp *[]*ws.PreparedMessage, taken, complete bool, err error) (goOn bool) {
	if err == nil && !complete {
		go s.finishWrite(bp, taken)
		return false
	}
	clear(*bp)
	*bp = (*bp)[:0]
	if err != nil {
		batchPool.Put(bp)
		s.writeFailed()
		return false
	}
	return true
}

// finishWrite is the writer goroutine a non-blocking write handed its
// batch to: it writes the rest of the batch (taken: what the connection
// holds pending; otherwise the whole batch), then the rest of the queue.
func (s *session) finishWrite(bp *[]*ws.PreparedMessage, taken bool) {
	var err error
	if taken {
		err = s.conn.Flush()
	} else {
		err = s.conn.WritePrepared(*bp...)
	}
	clear(*bp)
	batchPool.Put(bp)
	if err != nil {
		s.writeFailed()
		return
	}
	s.write(true)
}

// writeFailed ends the writer after a failed write: the connection is
// gone, and the reader sees it and cleans up. writing stays set, so that
// no writer starts again.
func (s *session) writeFailed() {
	s.qmu.Lock()
	s.closing = true
	clear(s.queue)
	s.qlen = 0
	s.wakeQueueWaiterLocked()
	s.qmu.Unlock()
	s.writerDone.Done()
}

// start arms the token's expiry. The client was greeted with welcome
// already, in the write of the 101 response (handleWS).
func (s *session) start() {
	s.armExpiry(s.claims.Expiry)
}

// readLoop reads and handles the client's commands, in order, until the
// connection ends; then it cleans up and ends the session.
//
// Between commands the connection is parked (ws.Conn.Park) and the
// goroutine goes back to what it was doing: an idle connection has no
// goroutine, and no stack, until its next message starts arriving, when
// readLoop runs again on a goroutine of the ws package (s.resume). Pings
// and pongs are handled while parked. A new connection's first commands
// are awaited on the goroutine for a moment first (lingerTime, below).
// Where a connection cannot be parked (TLS), the loop reads on.
func (s *session) readLoop() {
	for {
		s.awaitQueueRoom()
		started := false
		if s.lingerLeft > 0 {
			var err error
			if started, err = s.conn.Linger(lingerTime); err != nil {
				s.end(err)
				return
			}
			s.lingerLeft--
			if !started {
				s.lingerLeft = 0 // the client went quiet: park from now on
			}
		}
		if !started {
			if s.conn.Park(s.resume) {
				return
			}
			// The read buffer is taken once a message arrives: an idle
			// connection holds none.
			if err := s.conn.WaitMessage(); err != nil {
				s.end(err)
				return
			}
		}
		if err := s.readAndHandle(); err != nil {
			s.end(err)
			return
		}
	}
}

// A new connection's first commands come back to back (join, history, a
// quick leave and close), and the next one is then best awaited on the
// goroutine that served the last (ws.Conn.Linger): parking the connection
// in between would cost a registration with the parker and two goroutine
// hand-overs per command. After that a person types, seconds apart, and a
// linger would only add a timer to every command: a session lingers for
// at most lingerCommands commands, and not again once its client was quiet
// for lingerTime.
const (
	lingerTime     = 20 * time.Millisecond
	lingerCommands = 16
)

// readAndHandle reads the message that has started arriving and serves
// it. It is a function of its own so that its frame is not on the stack
// of a goroutine waiting in readLoop.
func (s *session) readAndHandle() error {
	bp := readBufferPool.Get().(*[]byte)
	typ, data, err := s.conn.ReadMessage((*bp)[:0])
	if err != nil {
		readBufferPool.Put(bp)
		return err
	}
	switch {
	case s.isClosing():
		// Closing: what the client still sends is read only to reach its
		// close frame.
	case typ == ws.Binary:
		s.startClose(ws.StatusUnsupportedData, "binary messages are not part of the protocol")
	default:
		// Broker calls are bounded by their own timeouts; the session
		// has no request context (its request ended at the upgrade).
		s.handle(context.Background(), data)
	}
	if cap(data) <= 4096 {
		*bp = data
		readBufferPool.Put(bp)
	}
	return nil
}

// end cleans up after the connection ended with err and tells the server
// the session is over.
func (s *session) end(err error) {
	s.logAt(zerolog.DebugLevel).Err(err).Uint16("code", uint16(ws.CloseStatus(err))).Msg("connection ended")
	s.cleanup()
	s.srv.sessionEnded()
}

var readBufferPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func (s *session) cleanup() {
	if s.expiry != nil {
		s.expiry.Stop()
	}
	if len(s.rooms) > 0 {
		ctx, cancel := s.srv.brokerContext(context.Background())
		for _, room := range s.rooms {
			// Disconnect, not Leave: while the node drains, the user's
			// presence lapses instead of being withdrawn (hub.Drain).
			_ = s.srv.hub.Disconnect(ctx, s, room)
		}
		cancel()
	}
	s.qmu.Lock()
	s.closing = true
	s.qmu.Unlock()
	_ = s.conn.CloseNow()
	// A writer still at work ends at once on the closed connection.
	s.writerDone.Wait()
	s.srv.unregister(s)
}

// armExpiry closes the connection with 4001 when the token expires: at
// exp itself, not exp plus the verification leeway, so clients can rely on
// the time in their token.
func (s *session) armExpiry(exp time.Time) {
	d := time.Until(exp)
	if s.expiry == nil {
		s.expiry = time.AfterFunc(max(d, 0), func() {
			s.logAt(zerolog.InfoLevel).Msg("token expired, closing with 4001")
			s.startClose(closeTokenExpired, "token expired")
		})
		return
	}
	s.expiry.Reset(max(d, 0))
}

// handle serves one command. A panic while serving it is a bug in chatd,
// not the client's fault: it is logged with its stack and the connection
// (whose state may now be inconsistent) is closed with 1011, while the
// node and every other connection carry on.
func (s *session) handle(ctx context.Context, data []byte) {
	defer func() {
		if v := recover(); v != nil {
			s.logAt(zerolog.ErrorLevel).Interface("panic", v).Bytes("stack", debug.Stack()).Msg("command handler panicked, closing with 1011")
			s.startClose(ws.StatusInternalError, "internal error")
		}
	}()
	now := time.Now()
	// Parsed before the command limit is applied, so that a denial carries
	// the command's ref like every other reply (PROTOCOL.md §3); a command
	// is at most ReadLimit bytes, and a flood ends in 1008 anyway.
	cmd, perr := protocol.ParseCommand(data, s.srv.cfg.MaxText)
	if ok, retry := s.cmdLim.Allow(now); !ok {
		s.srv.metrics.rateLimited.WithLabelValues("command").Inc()
		s.denied(now, cmd.Ref, retry)
		return
	}
	if perr != nil {
		s.reply(protocol.AppendError(replyBuffer(replyOverhead), cmd.Ref, perr))
		return
	}
	s.srv.metrics.command(cmd.Type)
	switch cmd.Type {
	case protocol.TypeJoin:
		s.join(ctx, cmd)
	case protocol.TypeLeave:
		s.leave(ctx, cmd)
	case protocol.TypeSend:
		s.send(ctx, cmd, now)
	case protocol.TypeHistory:
		s.history(ctx, cmd)
	case protocol.TypeTyping:
		s.typing(ctx, cmd)
	case protocol.TypeRefresh:
		s.refresh(ctx, cmd)
	case protocol.TypePing:
		s.reply(protocol.AppendPong(replyBuffer(replyOverhead+len(cmd.Ref)), cmd.Ref))
	}
}

// denied answers rate_limited, and closes with 1008 a client that keeps
// going far over the limit.
func (s *session) denied(now time.Time, ref string, retry time.Duration) {
	if s.strikes.Deny(now) {
		s.logAt(zerolog.WarnLevel).Msg("client keeps sending over the rate limit, closing with 1008")
		s.startClose(ws.StatusPolicyViolation, "rate limit exceeded repeatedly")
		return
	}
	s.reply(protocol.AppendError(replyBuffer(replyOverhead), ref, &protocol.Error{Code: protocol.CodeRateLimited, Message: "too many messages; retry after retry_ms", RetryMS: ratelimit.RetryMillis(retry)}))
}

func (s *session) fail(ref string, code, msg string) {
	s.reply(protocol.AppendError(replyBuffer(replyOverhead), ref, protocol.Errorf(code, msg)))
}

// brokerError answers a failed broker call.
func (s *session) brokerError(ref, op, room string, err error) {
	switch {
	case errors.Is(err, hub.ErrNotJoined):
		s.fail(ref, protocol.CodeNotJoined, "not in this room")
	case errors.Is(err, hub.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		s.logAt(zerolog.WarnLevel).Err(err).Str("op", op).Str("room", room).Msg("broker unavailable")
		s.fail(ref, protocol.CodeUnavailable, "the message service is temporarily unavailable; retry")
	default:
		s.logAt(zerolog.ErrorLevel).Err(err).Str("op", op).Str("room", room).Msg("broker call failed")
		s.fail(ref, protocol.CodeInternal, "internal error")
	}
}

func (s *session) timed(op string) func() {
	start := time.Now()
	return func() { s.srv.metrics.brokerOp(op, time.Since(start)) }
}

func (s *session) join(ctx context.Context, cmd protocol.Command) {
	if !s.claims.MayJoin(cmd.Room) {
		s.fail(cmd.Ref, protocol.CodeForbidden, "your token does not allow this room")
		return
	}
	if !s.rooms.has(cmd.Room) && len(s.rooms) >= s.srv.cfg.MaxRooms {
		s.fail(cmd.Ref, protocol.CodeBadRequest, "too many rooms on one connection (at most "+strconv.Itoa(s.srv.cfg.MaxRooms)+")")
		return
	}
	ctx, cancel := s.srv.brokerContext(ctx)
	defer cancel()
	done := s.timed("join")
	res, err := s.srv.hub.Join(ctx, s, cmd.Room, s.member, cmd.Ref, cmd.Since, s.srv.cfg.HistoryLimit)
	done()
	if err != nil {
		s.rooms.remove(cmd.Room)
		s.brokerError(cmd.Ref, "join", cmd.Room, err)
		return
	}
	s.rooms.add(cmd.Room)
	s.srv.metrics.joins.Inc()
	s.logAt(zerolog.DebugLevel).Str("room", cmd.Room).Str("since", cmd.Since).Int("history", res.History).Bool("recovered", res.Recovered).Msg("joined")
}

func (s *session) leave(ctx context.Context, cmd protocol.Command) {
	if !s.rooms.has(cmd.Room) {
		s.fail(cmd.Ref, protocol.CodeNotJoined, "not in this room")
		return
	}
	ctx, cancel := s.srv.brokerContext(ctx)
	defer cancel()
	s.rooms.remove(cmd.Room)
	if err := s.srv.hub.Leave(ctx, s, cmd.Room); err != nil && !errors.Is(err, hub.ErrNotJoined) {
		s.brokerError(cmd.Ref, "leave", cmd.Room, err)
		return
	}
	s.logAt(zerolog.DebugLevel).Str("room", cmd.Room).Msg("left")
	s.reply(protocol.AppendLeft(replyBuffer(replyOverhead+len(cmd.Ref)+len(cmd.Room)), cmd.Ref, cmd.Room))
}

func (s *session) send(ctx context.Context, cmd protocol.Command, now time.Time) {
	if !s.rooms.has(cmd.Room) {
		s.fail(cmd.Ref, protocol.CodeNotJoined, "join the room before sending to it")
		return
	}
	if ok, retry := s.sendLim.Allow(now); !ok {
		s.srv.metrics.rateLimited.WithLabelValues("connection").Inc()
		s.denied(now, cmd.Ref, retry)
		return
	}
	ctx, cancel := s.srv.brokerContext(ctx)
	defer cancel()
	d, err := s.srv.userLimiter.Allow(ctx, s.member.User)
	if err != nil {
		// The shared limit could not decide (Redis down): let the message
		// through, as ratelimit.UserLimiter asks; the connection's own
		// bucket still bounds it, and the publish answers unavailable
		// itself if Redis is gone.
		s.logAt(zerolog.DebugLevel).Err(err).Msg("user rate limit undecided; allowing")
		d.Allowed = true
	}
	if !d.Allowed {
		s.srv.metrics.rateLimited.WithLabelValues("user").Inc()
		s.denied(now, cmd.Ref, d.RetryAfter)
		return
	}
	done := s.timed("publish")
	m, _, err := s.srv.hub.Publish(ctx, s, protocol.Message{Room: cmd.Room, From: s.member.User, Name: s.member.Name, Text: cmd.Text, CID: cmd.CID})
	done()
	if err != nil {
		s.brokerError(cmd.Ref, "publish", cmd.Room, err)
		return
	}
	s.srv.metrics.messagesIn.Inc()
	s.reply(protocol.AppendSent(replyBuffer(replyOverhead+len(cmd.Ref)+len(m.Room)+len(m.ID)), cmd.Ref, m.Room, m.ID, m.TS))
}

func (s *session) history(ctx context.Context, cmd protocol.Command) {
	if !s.claims.MayJoin(cmd.Room) {
		s.fail(cmd.Ref, protocol.CodeForbidden, "your token does not allow this room")
		return
	}
	ctx, cancel := s.srv.brokerContext(ctx)
	defer cancel()
	done := s.timed("history")
	msgs, more, err := s.srv.broker.History(ctx, cmd.Room, cmd.Before, cmd.Limit)
	done()
	if err != nil {
		s.brokerError(cmd.Ref, "history", cmd.Room, err)
		return
	}
	s.reply(protocol.AppendHistory(replyBuffer(replyOverhead), cmd.Ref, cmd.Room, msgs, more))
}

func (s *session) typing(ctx context.Context, cmd protocol.Command) {
	if !s.rooms.has(cmd.Room) {
		s.fail(cmd.Ref, protocol.CodeNotJoined, "join the room before typing in it")
		return
	}
	ctx, cancel := s.srv.brokerContext(ctx)
	defer cancel()
	// Typing is best effort: no reply, and a lost event is harmless.
	_ = s.srv.hub.Typing(ctx, s, cmd.Room, s.member)
}

func (s *session) refresh(ctx context.Context, cmd protocol.Command) {
	claims, err := s.srv.verifier.Verify(cmd.Token)
	if err != nil {
		reason := auth.Reason(err)
		s.srv.metrics.authFailures.WithLabelValues(reason).Inc()
		s.logAt(zerolog.InfoLevel).Str("reason", reason).Msg("refresh token refused")
		s.fail(cmd.Ref, protocol.CodeForbidden, "token refused: "+reason)
		return
	}
	if claims.Subject != s.member.User {
		s.logAt(zerolog.WarnLevel).Str("new_sub", claims.Subject).Msg("refresh for another user, closing with 4003")
		s.startClose(closeTokenInvalid, "token is for another user")
		return
	}
	s.claims = claims
	s.armExpiry(claims.Expiry)
	// The new token's rooms claim applies at once: rooms it no longer
	// allows are left, each announced with a left event without ref,
	// before the reply, so the client's state is settled when it sees
	// refreshed.
	for _, room := range slices.Clone(s.rooms) {
		if claims.MayJoin(room) {
			continue
		}
		s.rooms.remove(room)
		ctx, cancel := s.srv.brokerContext(ctx)
		err := s.srv.hub.Leave(ctx, s, room)
		cancel()
		if err != nil && !errors.Is(err, hub.ErrNotJoined) {
			s.logAt(zerolog.WarnLevel).Err(err).Str("room", room).Msg("leaving a room the refreshed token does not allow")
		}
		s.logAt(zerolog.InfoLevel).Str("room", room).Msg("refreshed token does not allow the room: left")
		s.reply(protocol.AppendLeft(replyBuffer(replyOverhead), "", room))
	}
	s.reply(protocol.AppendRefreshed(replyBuffer(replyOverhead), cmd.Ref, claims.Expiry.Unix()))
}
