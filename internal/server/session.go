package server

import (
	"context"
	"errors"
	"runtime/debug"
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

// session is one client connection speaking the chat protocol. The
// goroutine that accepted the connection reads and handles commands in
// order; a writer goroutine exists only while the outbound queue is not
// empty, so an idle connection costs one parked goroutine and no buffer.
type session struct {
	srv  *Server
	conn *ws.Conn
	id   string
	log  zerolog.Logger

	// Owned by the reading goroutine.
	claims  *auth.Claims
	member  protocol.Member
	rooms   map[string]struct{}
	sendLim ratelimit.Bucket
	cmdLim  ratelimit.Bucket
	strikes ratelimit.Strikes

	expiry *time.Timer // closes with 4001 when the token expires

	// The outbound queue: a ring of prepared frames, guarded by qmu.
	qmu        sync.Mutex
	qroom      sync.Cond // on qmu: the queue shrank or closing was set
	queue      []*ws.PreparedMessage
	qhead      int
	qlen       int
	writing    bool          // a writer goroutine is running
	closing    bool          // a close was decided; nothing more is queued
	closeCode  ws.StatusCode // the close the writer sends after the queue
	closeText  string
	writerDone sync.WaitGroup
	batch      []*ws.PreparedMessage // the writer's, reused
}

func newSession(srv *Server, conn *ws.Conn, id string, claims *auth.Claims) *session {
	cfg := &srv.cfg
	s := &session{
		srv:     srv,
		conn:    conn,
		id:      id,
		claims:  claims,
		member:  protocol.Member{User: claims.Subject, Name: displayName(claims)},
		rooms:   map[string]struct{}{},
		sendLim: ratelimit.NewBucket(cfg.SendRate, cfg.SendBurst),
		cmdLim:  ratelimit.NewBucket(cfg.CommandRate, cfg.CommandBurst),
		strikes: ratelimit.NewStrikes(cfg.AbuseStrikes, cfg.AbuseWindow),
		queue:   make([]*ws.PreparedMessage, cfg.QueueSize),
	}
	s.qroom.L = &s.qmu
	s.log = srv.log.With().Str("conn", id).Str("user", claims.Subject).Logger()
	return s
}

func displayName(c *auth.Claims) string {
	if c.Name != "" {
		return c.Name
	}
	return c.Subject
}

// UserID implements hub.Conn.
func (s *session) UserID() string { return s.member.User }

// Send implements hub.Conn: it queues a frame and never blocks. Droppable
// events are dropped once the queue is half full; a full queue means the
// client stopped reading, and it is closed with 1013 (it reconnects and
// recovers with since).
func (s *session) Send(pm *ws.PreparedMessage, droppable bool) {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if s.closing {
		return
	}
	if droppable && s.qlen >= len(s.queue)/2 {
		s.srv.metrics.queueDrops.Inc()
		return
	}
	if s.qlen == len(s.queue) {
		s.srv.metrics.slowConsumers.Inc()
		s.log.Warn().Int("queue", s.qlen).Msg("slow consumer: outbound queue full, closing with 1013")
		// What is queued will not be read in time; the client recovers it.
		for i := range s.queue {
			s.queue[i] = nil
		}
		s.qhead, s.qlen = 0, 0
		s.closeLocked(ws.StatusTryAgainLater, "slow consumer: outbound queue full")
		return
	}
	s.queue[(s.qhead+s.qlen)%len(s.queue)] = pm
	s.qlen++
	s.startWriterLocked()
}

func (s *session) reply(data []byte) { s.Send(ws.NewPreparedMessage(ws.Text, data), false) }

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
	s.qroom.Broadcast()
	s.startWriterLocked()
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
	limit := len(s.queue) - max(len(s.queue)/8, 4)
	s.qmu.Lock()
	for s.qlen > limit && !s.closing {
		s.qroom.Wait()
	}
	s.qmu.Unlock()
}

func (s *session) isClosing() bool {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	return s.closing
}

func (s *session) startWriterLocked() {
	if s.writing {
		return
	}
	s.writing = true
	s.writerDone.Add(1)
	go s.writeLoop()
}

// writeLoop writes queued frames in batches (one writev each) until the
// queue is empty, then exits; if a close was decided, it sends it last.
func (s *session) writeLoop() {
	defer s.writerDone.Done()
	for {
		s.qmu.Lock()
		if s.qlen == 0 {
			closing, code, text := s.closing, s.closeCode, s.closeText
			if !closing {
				s.writing = false
				s.qmu.Unlock()
				return
			}
			s.qmu.Unlock()
			// Waits for the client's close frame, read by the session's
			// reading goroutine, up to the close timeout.
			_ = s.conn.Close(code, text)
			return // writing stays true: nothing is written after a close
		}
		n := min(s.qlen, 64)
		for i := 0; i < n; i++ {
			j := (s.qhead + i) % len(s.queue)
			s.batch = append(s.batch, s.queue[j])
			s.queue[j] = nil
		}
		s.qhead = (s.qhead + n) % len(s.queue)
		s.qlen -= n
		s.qroom.Broadcast()
		s.qmu.Unlock()

		err := s.conn.WritePrepared(s.batch...)
		clear(s.batch)
		s.batch = s.batch[:0]
		if err != nil {
			// The connection is gone; the reader sees it and cleans up.
			s.qmu.Lock()
			s.closing = true
			for i := range s.queue {
				s.queue[i] = nil
			}
			s.qlen = 0
			s.qroom.Broadcast()
			s.qmu.Unlock()
			return
		}
	}
}

// run serves the connection until it ends. It is called on the goroutine
// that accepted the connection.
func (s *session) run(ctx context.Context) {
	defer s.cleanup()
	s.reply(protocol.AppendWelcome(nil, s.member.User, s.member.Name, s.srv.cfg.NodeID, s.id, int64(s.srv.cfg.Heartbeat/time.Second)))
	s.armExpiry(s.claims.Expiry)

	for {
		s.awaitQueueRoom()
		bp := readBufferPool.Get().(*[]byte)
		typ, data, err := s.conn.ReadMessage((*bp)[:0])
		if err != nil {
			readBufferPool.Put(bp)
			s.log.Debug().Err(err).Uint16("code", uint16(ws.CloseStatus(err))).Msg("connection ended")
			return
		}
		switch {
		case s.isClosing():
			// Closing: what the client still sends is read only to
			// reach its close frame.
		case typ == ws.Binary:
			s.startClose(ws.StatusUnsupportedData, "binary messages are not part of the protocol")
		default:
			s.handle(ctx, data)
		}
		if cap(data) <= 4096 {
			*bp = data
			readBufferPool.Put(bp)
		}
	}
}

var readBufferPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func (s *session) cleanup() {
	if s.expiry != nil {
		s.expiry.Stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	defer cancel()
	for room := range s.rooms {
		// Disconnect, not Leave: while the node drains, the user's
		// presence lapses instead of being withdrawn (hub.Drain).
		_ = s.srv.hub.Disconnect(ctx, s, room)
	}
	s.qmu.Lock()
	s.closing = true
	s.qmu.Unlock()
	_ = s.conn.CloseNow()
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
			s.log.Info().Msg("token expired, closing with 4001")
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
			s.log.Error().Interface("panic", v).Bytes("stack", debug.Stack()).Msg("command handler panicked, closing with 1011")
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
		s.reply(protocol.AppendError(nil, cmd.Ref, perr))
		return
	}
	s.srv.metrics.commands.WithLabelValues(cmd.Type).Inc()
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
		s.reply(protocol.AppendPong(nil, cmd.Ref))
	}
}

// denied answers rate_limited, and closes with 1008 a client that keeps
// going far over the limit.
func (s *session) denied(now time.Time, ref string, retry time.Duration) {
	if s.strikes.Deny(now) {
		s.log.Warn().Msg("client keeps sending over the rate limit, closing with 1008")
		s.startClose(ws.StatusPolicyViolation, "rate limit exceeded repeatedly")
		return
	}
	s.reply(protocol.AppendError(nil, ref, &protocol.Error{Code: protocol.CodeRateLimited, Message: "too many messages; retry after retry_ms", RetryMS: ratelimit.RetryMillis(retry)}))
}

func (s *session) fail(ref string, code, msg string) {
	s.reply(protocol.AppendError(nil, ref, protocol.Errorf(code, msg)))
}

// brokerError answers a failed broker call.
func (s *session) brokerError(ref, op, room string, err error) {
	switch {
	case errors.Is(err, hub.ErrNotJoined):
		s.fail(ref, protocol.CodeNotJoined, "not in this room")
	case errors.Is(err, hub.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		s.log.Warn().Err(err).Str("op", op).Str("room", room).Msg("broker unavailable")
		s.fail(ref, protocol.CodeUnavailable, "the message service is temporarily unavailable; retry")
	default:
		s.log.Error().Err(err).Str("op", op).Str("room", room).Msg("broker call failed")
		s.fail(ref, protocol.CodeInternal, "internal error")
	}
}

func (s *session) timed(op string) func() {
	start := time.Now()
	return func() { s.srv.metrics.brokerDuration.WithLabelValues(op).Observe(time.Since(start).Seconds()) }
}

func (s *session) join(ctx context.Context, cmd protocol.Command) {
	if !s.claims.MayJoin(cmd.Room) {
		s.fail(cmd.Ref, protocol.CodeForbidden, "your token does not allow this room")
		return
	}
	if _, in := s.rooms[cmd.Room]; !in && len(s.rooms) >= s.srv.cfg.MaxRooms {
		s.fail(cmd.Ref, protocol.CodeBadRequest, "too many rooms on one connection (at most "+strconv.Itoa(s.srv.cfg.MaxRooms)+")")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, brokerTimeout)
	defer cancel()
	done := s.timed("join")
	res, err := s.srv.hub.Join(ctx, s, cmd.Room, s.member, cmd.Ref, cmd.Since, s.srv.cfg.HistoryLimit)
	done()
	if err != nil {
		delete(s.rooms, cmd.Room)
		s.brokerError(cmd.Ref, "join", cmd.Room, err)
		return
	}
	s.rooms[cmd.Room] = struct{}{}
	s.srv.metrics.joins.Inc()
	s.log.Debug().Str("room", cmd.Room).Str("since", cmd.Since).Int("history", res.History).Bool("recovered", res.Recovered).Msg("joined")
}

func (s *session) leave(ctx context.Context, cmd protocol.Command) {
	if _, in := s.rooms[cmd.Room]; !in {
		s.fail(cmd.Ref, protocol.CodeNotJoined, "not in this room")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, brokerTimeout)
	defer cancel()
	delete(s.rooms, cmd.Room)
	if err := s.srv.hub.Leave(ctx, s, cmd.Room); err != nil && !errors.Is(err, hub.ErrNotJoined) {
		s.brokerError(cmd.Ref, "leave", cmd.Room, err)
		return
	}
	s.log.Debug().Str("room", cmd.Room).Msg("left")
	s.reply(protocol.AppendLeft(nil, cmd.Ref, cmd.Room))
}

func (s *session) send(ctx context.Context, cmd protocol.Command, now time.Time) {
	if _, in := s.rooms[cmd.Room]; !in {
		s.fail(cmd.Ref, protocol.CodeNotJoined, "join the room before sending to it")
		return
	}
	if ok, retry := s.sendLim.Allow(now); !ok {
		s.srv.metrics.rateLimited.WithLabelValues("connection").Inc()
		s.denied(now, cmd.Ref, retry)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, brokerTimeout)
	defer cancel()
	d, err := s.srv.userLimiter.Allow(ctx, s.member.User)
	if err != nil {
		// The shared limit could not decide (Redis down): let the message
		// through, as ratelimit.UserLimiter asks; the connection's own
		// bucket still bounds it, and the publish answers unavailable
		// itself if Redis is gone.
		s.log.Debug().Err(err).Msg("user rate limit undecided; allowing")
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
	s.reply(protocol.AppendSent(nil, cmd.Ref, m.Room, m.ID, m.TS))
}

func (s *session) history(ctx context.Context, cmd protocol.Command) {
	if !s.claims.MayJoin(cmd.Room) {
		s.fail(cmd.Ref, protocol.CodeForbidden, "your token does not allow this room")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, brokerTimeout)
	defer cancel()
	done := s.timed("history")
	msgs, more, err := s.srv.broker.History(ctx, cmd.Room, cmd.Before, cmd.Limit)
	done()
	if err != nil {
		s.brokerError(cmd.Ref, "history", cmd.Room, err)
		return
	}
	s.reply(protocol.AppendHistory(nil, cmd.Ref, cmd.Room, msgs, more))
}

func (s *session) typing(ctx context.Context, cmd protocol.Command) {
	if _, in := s.rooms[cmd.Room]; !in {
		s.fail(cmd.Ref, protocol.CodeNotJoined, "join the room before typing in it")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, brokerTimeout)
	defer cancel()
	// Typing is best effort: no reply, and a lost event is harmless.
	_ = s.srv.hub.Typing(ctx, s, cmd.Room, s.member)
}

func (s *session) refresh(ctx context.Context, cmd protocol.Command) {
	claims, err := s.srv.verifier.Verify(cmd.Token)
	if err != nil {
		reason := auth.Reason(err)
		s.srv.metrics.authFailures.WithLabelValues(reason).Inc()
		s.log.Info().Str("reason", reason).Msg("refresh token refused")
		s.fail(cmd.Ref, protocol.CodeForbidden, "token refused: "+reason)
		return
	}
	if claims.Subject != s.member.User {
		s.log.Warn().Str("new_sub", claims.Subject).Msg("refresh for another user, closing with 4003")
		s.startClose(closeTokenInvalid, "token is for another user")
		return
	}
	s.claims = claims
	s.armExpiry(claims.Expiry)
	// The new token's rooms claim applies at once: rooms it no longer
	// allows are left, each announced with a left event without ref,
	// before the reply, so the client's state is settled when it sees
	// refreshed.
	for room := range s.rooms {
		if claims.MayJoin(room) {
			continue
		}
		delete(s.rooms, room)
		ctx, cancel := context.WithTimeout(ctx, brokerTimeout)
		err := s.srv.hub.Leave(ctx, s, room)
		cancel()
		if err != nil && !errors.Is(err, hub.ErrNotJoined) {
			s.log.Warn().Err(err).Str("room", room).Msg("leaving a room the refreshed token does not allow")
		}
		s.log.Info().Str("room", room).Msg("refreshed token does not allow the room: left")
		s.reply(protocol.AppendLeft(nil, "", room))
	}
	s.reply(protocol.AppendRefreshed(nil, cmd.Ref, claims.Expiry.Unix()))
}
