package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatd/chatd/internal/protocol"
	"github.com/chatd/chatd/internal/ws"
)

// fanoutFigures are the fanout scenario's own figures. Deliveries count
// every connection in a room, the publishers' own copies included (the
// sender gets its message too), which is also what chatd counts.
type fanoutFigures struct {
	Members    int `json:"members"`    // member connections joined
	Publishers int `json:"publishers"` // publisher connections joined
	Rooms      int `json:"rooms"`
	// PerPublisherRate is what each publisher sends, msg/s: chatd's
	// per-connection and per-user rates must be above it.
	PerPublisherRate float64 `json:"per_publisher_rate"`
	PublishS         float64 `json:"publish_s"`
	DrainS           float64 `json:"drain_s"`
	// Published is send commands written; Acked those answered `sent`;
	// PublishErrors those answered `error` (RateLimited of them with
	// rate_limited).
	Published     int64   `json:"published"`
	Acked         int64   `json:"acked"`
	PublishErrors int64   `json:"publish_errors"`
	RateLimited   int64   `json:"rate_limited"`
	MsgsPerS      float64 `json:"msgs_per_s"`
	// Expected is, per connection and room it joined, the publishes to
	// the room that were acknowledged (every connection joined before
	// publishing began, so each should receive all of them), summed.
	// Delivered is the distinct messages received. Lost and Extra are,
	// per connection and room, what Delivered falls short of or exceeds
	// Expected by, summed, so that one member's loss is never hidden by
	// another's surplus. Duplicates and OutOfOrder are judged per
	// connection by message id order within the room (PROTOCOL.md §5).
	Expected   int64 `json:"expected"`
	Delivered  int64 `json:"delivered"`
	Lost       int64 `json:"lost"`
	Extra      int64 `json:"extra"`
	Duplicates int64 `json:"duplicates"`
	OutOfOrder int64 `json:"out_of_order"`
	// MembersWithLoss is how many (connection, room) pairs lost
	// anything; RoomsWithLoss how many rooms had such a member.
	MembersWithLoss int     `json:"members_with_loss"`
	RoomsWithLoss   int     `json:"rooms_with_loss"`
	DeliveriesPerS  float64 `json:"deliveries_per_s"`
	// Latency is from the publisher's send to a member's receipt;
	// AckLatency from the send to the `sent` reply.
	Latency    latency `json:"latency"`
	AckLatency latency `json:"ack_latency"`
	// Disconnects is connections that ended before the run did.
	Disconnects int64 `json:"disconnects"`
	// With -pid: the server CPU from the start of publishing to the end of
	// the drain, per million deliveries.
	ServerCPUS               float64 `json:"server_cpu_s,omitempty"`
	ServerCPUSPerMDeliveries float64 `json:"server_cpu_s_per_million_deliveries,omitempty"`
}

// recentIDs is how many ids each connection remembers per room to tell
// a duplicate from an out-of-order message. A message repeated further
// back than that counts as out of order.
const recentIDs = 32

// track is one connection's view of one room.
type track struct {
	room int
	got  atomic.Int64 // distinct messages received
	dups atomic.Int64
	ooo  atomic.Int64
	// Owned by the connection's reading goroutine.
	last   protocol.ID
	recent [recentIDs]protocol.ID
	next   int
}

func (t *track) seen(id protocol.ID) bool {
	for _, r := range t.recent {
		if r == id {
			return true
		}
	}
	return false
}

func (t *track) remember(id protocol.ID) {
	t.recent[t.next] = id
	t.next = (t.next + 1) % recentIDs
}

// observe classifies a delivered id: new (in order, or out of order but
// never seen), or a duplicate. It reports whether the message is new.
func (t *track) observe(id protocol.ID) bool {
	switch c := id.Compare(t.last); {
	case c > 0:
		t.last = id
		t.remember(id)
		t.got.Add(1)
		return true
	case c == 0 || t.seen(id):
		t.dups.Add(1)
		return false
	default:
		// Ids of a room strictly increase in delivery order (PROTOCOL.md
		// §5): a smaller one, not seen before, came out of order.
		t.ooo.Add(1)
		t.remember(id)
		t.got.Add(1)
		return true
	}
}

// fconn is one fanout connection, member or publisher.
type fconn struct {
	idx    int
	c      *ws.Conn
	tracks map[string]*track
	pub    *publisher  // nil for members
	ended  atomic.Bool // the connection is closed: nothing more will come
}

// ackRing is how many recent send times a publisher keeps, to time the
// `sent` replies.
const ackRing = 4096

type publisher struct {
	id        int
	fc        *fconn
	rooms     []int
	sendAt    [ackRing]atomic.Int64
	attempted atomic.Int64
	acked     atomic.Int64
	errored   atomic.Int64
}

type fanout struct {
	env       *runEnv
	cfg       *config
	base      time.Time // origin of the send timestamps (monotonic)
	roomNames []string
	roomIdx   map[string]int
	joined    []atomic.Int64 // connections joined, per room
	sentOK    []atomic.Int64 // publishes acknowledged, per room
	ackLat    *shardedHist

	mu     sync.Mutex
	tracks []*track // of the joined connections
	conns  []*ws.Conn
	pubs   []*publisher

	presence     atomic.Int64 // presence events received
	closing      atomic.Bool
	disconnects  atomic.Int64
	rateLimited  atomic.Int64
	rlOnce       sync.Once
	stopPublish  context.CancelFunc
	perPublisher float64
}

// runFanout: members and publishers join, then the publishers send at
// cfg.rate in total for cfg.duration, then the run waits for the
// outstanding deliveries and closes every connection with 1000.
func runFanout(ctx context.Context, env *runEnv) error {
	cfg, live := env.cfg, env.live
	f := &fanout{
		env:     env,
		cfg:     cfg,
		base:    time.Now(),
		roomIdx: map[string]int{},
		joined:  make([]atomic.Int64, cfg.rooms),
		sentOK:  make([]atomic.Int64, cfg.rooms),
		ackLat:  newShardedHist(),
	}
	for r := range cfg.rooms {
		f.roomNames = append(f.roomNames, cfg.room(r))
		f.roomIdx[f.roomNames[r]] = r
	}
	P := cfg.publishers
	f.perPublisher = cfg.rate / float64(P)
	figs := &fanoutFigures{Rooms: cfg.rooms, PerPublisherRate: round3(f.perPublisher)}
	env.res.Fanout = figs
	env.res.Params = params{Members: cfg.conns, Rooms: cfg.rooms, Publishers: P, Rate: cfg.rate, Size: cfg.size,
		DurationS: cfg.duration.Seconds(), SrcIPs: len(cfg.srcIPs), ConnectWorkers: cfg.connectWorkers,
		Compression: cfg.compression}
	if !cfg.quiet {
		need := int(math.Ceil(f.perPublisher))
		fmt.Fprintf(env.stderr, "chatbench: %d publishers send %.1f msg/s each: chatd's -send-rate, -user-rate and -command-rate (CHATD_SEND_RATE, CHATD_USER_RATE, CHATD_COMMAND_RATE) must be above %d, with bursts to match\n", P, f.perPublisher, need)
	}

	// Publisher p publishes to rooms r with r%P == p, or, with more
	// publishers than rooms, to room p%R.
	for p := range P {
		pub := &publisher{id: p}
		if P <= cfg.rooms {
			for r := p; r < cfg.rooms; r += P {
				pub.rooms = append(pub.rooms, r)
			}
		} else {
			pub.rooms = []int{p % cfg.rooms}
		}
		f.pubs = append(f.pubs, pub)
	}

	// Connect: members 0..N-1, then publishers N..N+P-1.
	var readers sync.WaitGroup
	total := cfg.conns + P
	var connected, failed atomic.Int64
	start := time.Now()
	forEach(ctx, total, cfg.connectWorkers, func(i int) {
		var rooms []int
		var sub string
		var pub *publisher
		urlIdx := i
		if i < cfg.conns {
			rooms, sub = []int{i % cfg.rooms}, "bench-"+strconv.Itoa(i)
		} else {
			pub = f.pubs[i-cfg.conns]
			rooms, sub, urlIdx = pub.rooms, "bench-pub-"+strconv.Itoa(pub.id), pub.id
		}
		names := make([]string, len(rooms))
		for k, r := range rooms {
			names[k] = f.roomNames[r]
		}
		c, err := env.cn.connectJoin(ctx, i, urlIdx, sub, names)
		if err != nil {
			if ctx.Err() == nil {
				failed.Add(1)
				env.fails.add(err)
			}
			return
		}
		fc := &fconn{idx: i, c: c, tracks: make(map[string]*track, len(rooms)), pub: pub}
		f.mu.Lock()
		for k, r := range rooms {
			t := &track{room: r}
			fc.tracks[names[k]] = t
			f.tracks = append(f.tracks, t)
			f.joined[r].Add(1)
		}
		f.conns = append(f.conns, c)
		f.mu.Unlock()
		if pub != nil {
			pub.fc = fc
		}
		connected.Add(1)
		live.opened.add(i, 1)
		live.conns.Add(1)
		readers.Add(1)
		go f.read(fc, &readers)
	})
	elapsed := time.Since(start)
	n := int(connected.Load())
	env.res.Connect = &connectFigures{
		Attempted: total,
		Connected: n,
		Failed:    int(failed.Load()),
		ElapsedS:  round3(elapsed.Seconds()),
		PerSecond: round3(float64(n) / elapsed.Seconds()),
	}
	var active []*publisher
	for _, p := range f.pubs {
		if p.fc != nil {
			active = append(active, p)
			figs.Publishers++
		}
	}
	figs.Members = n - figs.Publishers

	var runErr error
	switch {
	case ctx.Err() != nil:
	case len(active) == 0:
		runErr = errors.New("no publisher could connect (see the failures)")
	case len(active) < len(f.pubs):
		env.warn("only %d of %d publishers connected: the rate is %.1f msg/s instead of %.1f", len(active), len(f.pubs), f.perPublisher*float64(len(active)), cfg.rate)
	}
	if env.fails.count("http_429") > 0 {
		env.warn("the server refused upgrades with 429: raise chatd's -upgrade-rate/-upgrade-burst (CHATD_UPGRADE_RATE, CHATD_UPGRADE_BURST) or spread over more -src-ips")
	}

	if runErr == nil && ctx.Err() == nil {
		// Let the presence storm of the joins (every member's join is an
		// event to every member before it) settle, so that it is not
		// counted in the publishing phase's CPU or latency.
		live.setPhase("settling")
		f.settle(ctx)

		live.setPhase("publishing")
		server := env.procs.measureStart()
		pubCtx, cancel := context.WithCancel(ctx)
		f.stopPublish = cancel
		interval := time.Duration(float64(time.Second) * float64(P) / cfg.rate)
		pubStart := time.Now()
		pubEnd := pubStart.Add(cfg.duration)
		var pubWG sync.WaitGroup
		for _, p := range active {
			pubWG.Add(1)
			go func() {
				defer pubWG.Done()
				f.publish(pubCtx, p, pubStart, pubEnd, interval)
			}()
		}
		pubWG.Wait()
		cancel()
		figs.PublishS = round3(time.Since(pubStart).Seconds())

		live.setPhase("draining")
		drainStart := time.Now()
		f.drain(ctx, active)
		figs.DrainS = round3(time.Since(drainStart).Seconds())
		server.finish(env.procs)
		env.res.Server = server

		f.figures(figs, active)
		if server != nil {
			figs.ServerCPUS = server.CPUSeconds
			if figs.Delivered > 0 {
				figs.ServerCPUSPerMDeliveries = round3(server.CPUSeconds / (float64(figs.Delivered) / 1e6))
			}
		}
		if f.rateLimited.Load() > 0 {
			runErr = fmt.Errorf("chatd answered rate_limited %d times: the figures are not valid; raise its rate limits (see above)", f.rateLimited.Load())
		}
	}

	live.setPhase("closing")
	f.closing.Store(true)
	f.mu.Lock()
	conns := f.conns
	f.mu.Unlock()
	closeAll(conns, 256)
	if !waitGroupTimeout(&readers, 10*time.Second) {
		env.warn("some connections did not finish closing within 10s")
	}
	figs.Disconnects = f.disconnects.Load()
	return runErr
}

// publish sends p's messages from start to end, one every interval,
// round-robin over its rooms. Publisher k of P starts k/P of an interval
// late, so that the publishers' sends interleave evenly.
func (f *fanout) publish(ctx context.Context, p *publisher, start, end time.Time, interval time.Duration) {
	var cmd []byte
	next := start.Add(time.Duration(int64(interval) * int64(p.id) / int64(len(f.pubs))))
	for seq := int64(1); next.Before(end); seq++ {
		if !sleepUntil(ctx, next) {
			return
		}
		room := p.rooms[int(seq-1)%len(p.rooms)]
		ns := int64(time.Since(f.base))
		cmd = appendSend(cmd[:0], f.roomNames[room], p.id, seq, ns, f.cfg.size)
		p.sendAt[seq%ackRing].Store(ns)
		if err := p.fc.c.WriteMessage(ws.Text, cmd); err != nil {
			f.env.fails.addKind("publish_"+classifyRead(err), fmt.Errorf("publisher %d: %w", p.id, err))
			return
		}
		p.attempted.Add(1)
		f.env.live.published.add(p.id, 1)
		next = next.Add(interval)
	}
}

// appendSend encodes a send whose text is "b:<pub>:<seq>:<ns>", ns being
// the send time in nanoseconds since the run's monotonic origin, padded
// with ":xxx…" to size bytes when size is larger.
func appendSend(b []byte, room string, pub int, seq, ns int64, size int) []byte {
	b = append(b, `{"type":"send","ref":"`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `","room":`...)
	b = protocol.AppendString(b, room)
	b = append(b, `,"text":"b:`...)
	textStart := len(b) - 2
	b = strconv.AppendInt(b, int64(pub), 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, ns, 10)
	if pad := size - (len(b) - textStart); pad > 1 {
		b = append(b, ':')
		for range pad - 1 {
			b = append(b, 'x')
		}
	}
	return append(b, `"}`...)
}

// parseSendTime returns the ns field of a text made by appendSend.
func parseSendTime(text []byte) (int64, bool) {
	rest, ok := bytes.CutPrefix(text, []byte("b:"))
	if !ok {
		return 0, false
	}
	for range 2 { // skip pub and seq
		i := bytes.IndexByte(rest, ':')
		if i < 0 {
			return 0, false
		}
		rest = rest[i+1:]
	}
	if i := bytes.IndexByte(rest, ':'); i >= 0 {
		rest = rest[:i]
	}
	var ns int64
	if len(rest) == 0 || len(rest) > 19 {
		return 0, false
	}
	for _, c := range rest {
		if c < '0' || c > '9' {
			return 0, false
		}
		ns = ns*10 + int64(c-'0')
	}
	return ns, true
}

// read is a connection's reading goroutine.
func (f *fanout) read(fc *fconn, wg *sync.WaitGroup) {
	defer wg.Done()
	defer f.env.live.conns.Add(-1)
	defer fc.ended.Store(true)
	buf := make([]byte, 0, 512)
	for {
		_, data, err := fc.c.ReadMessage(buf[:0])
		if err != nil {
			if !f.closing.Load() {
				f.disconnects.Add(1)
				f.env.fails.addKind(classifyRead(err), fmt.Errorf("connection %d ended during the run: %w", fc.idx, err))
			}
			return
		}
		if cap(data) <= 64<<10 {
			buf = data
		}
		switch eventType(data) {
		case "message":
			f.onMessage(fc, data)
		case "sent":
			if fc.pub != nil {
				f.onSent(fc.pub, data)
			}
		case "error":
			f.onError(fc, data)
		case "presence":
			f.presence.Add(1)
		case "draining":
			f.env.fails.addKind("draining", fmt.Errorf("connection %d: the node is shutting down: %s", fc.idx, data))
		}
	}
}

func (f *fanout) onMessage(fc *fconn, data []byte) {
	now := int64(time.Since(f.base))
	room, _ := field(data, "room")
	t := fc.tracks[string(room)]
	if t == nil {
		return
	}
	text, _ := field(data, "text")
	sentAt, ok := parseSendTime(text)
	if !ok {
		return // not the bench's
	}
	idText, _ := field(data, "id")
	id, ok := protocol.ParseID(string(idText))
	if !ok {
		f.env.fails.addKind("bad_id", fmt.Errorf("message id %q is not <ms>-<seq>", idText))
		return
	}
	f.env.live.deliveries.add(fc.idx, 1)
	if t.observe(id) {
		f.env.live.lat.record(fc.idx, now-sentAt)
	}
}

func (f *fanout) onSent(p *publisher, data []byte) {
	now := int64(time.Since(f.base))
	room, _ := field(data, "room")
	r, ok := f.roomIdx[string(room)]
	if !ok {
		return
	}
	f.sentOK[r].Add(1)
	p.acked.Add(1)
	if ref, ok := field(data, "ref"); ok {
		if seq, err := strconv.ParseInt(string(ref), 10, 64); err == nil && p.attempted.Load()-seq < ackRing {
			f.ackLat.record(p.id, now-p.sendAt[seq%ackRing].Load())
		}
	}
}

func (f *fanout) onError(fc *fconn, data []byte) {
	code, _ := field(data, "code")
	if fc.pub != nil {
		fc.pub.errored.Add(1)
	}
	if string(code) == protocol.CodeRateLimited {
		f.rateLimited.Add(1)
		f.rlOnce.Do(func() {
			retry, _ := numField(data, "retry_ms")
			need := int(math.Ceil(f.perPublisher * 2))
			fmt.Fprintf(f.env.stderr, "chatbench: ERROR: chatd answered rate_limited (retry_ms %d): each publisher sends %.1f msg/s as its own user, which is over chatd's per-connection or per-user limit. Start chatd with higher limits, e.g. CHATD_SEND_RATE=%d CHATD_SEND_BURST=%d CHATD_USER_RATE=%d CHATD_USER_BURST=%d CHATD_COMMAND_RATE=%d CHATD_COMMAND_BURST=%d, or use more -publishers. Publishing stops now.\n",
				retry, f.perPublisher, need, need, need, need, need, need)
			if f.stopPublish != nil {
				f.stopPublish()
			}
		})
	}
	f.env.fails.addKind("error_"+string(code), fmt.Errorf("connection %d: %s", fc.idx, data))
}

// settle waits until no presence event arrived for settleQuiet, at
// most settleMax.
func (f *fanout) settle(ctx context.Context) {
	const settleQuiet, settleMax = 500 * time.Millisecond, 30 * time.Second
	deadline := time.Now().Add(settleMax)
	last, lastChange := f.presence.Load(), time.Now()
	for ctx.Err() == nil && time.Now().Before(deadline) {
		sleepUntil(ctx, time.Now().Add(50*time.Millisecond))
		if n := f.presence.Load(); n != last {
			last, lastChange = n, time.Now()
		} else if time.Since(lastChange) >= settleQuiet {
			return
		}
	}
}

// drain waits for the `sent` replies to every send, then for the
// deliveries they imply, until they are all in, nothing arrived for 2 s,
// or -drain passed.
func (f *fanout) drain(ctx context.Context, pubs []*publisher) {
	deadline := time.Now().Add(f.cfg.drain)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		var outstanding int64
		for _, p := range pubs {
			if !p.fc.ended.Load() { // a closed publisher gets no more replies
				outstanding += p.attempted.Load() - p.acked.Load() - p.errored.Load()
			}
		}
		if outstanding <= 0 {
			break
		}
		sleepUntil(ctx, time.Now().Add(10*time.Millisecond))
	}
	last, lastChange := int64(-1), time.Now()
	for ctx.Err() == nil && time.Now().Before(deadline) {
		exp, got := f.expected()
		if got >= exp {
			return
		}
		if got != last {
			last, lastChange = got, time.Now()
		} else if time.Since(lastChange) > 2*time.Second {
			return
		}
		sleepUntil(ctx, time.Now().Add(10*time.Millisecond))
	}
}

// expected returns the deliveries the acknowledged publishes imply and
// the distinct ones received.
func (f *fanout) expected() (exp, got int64) {
	for r := range f.sentOK {
		exp += f.sentOK[r].Load() * f.joined[r].Load()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, t := range f.tracks {
		got += t.got.Load()
	}
	return exp, got
}

func (f *fanout) figures(figs *fanoutFigures, pubs []*publisher) {
	for _, p := range pubs {
		figs.Published += p.attempted.Load()
		figs.Acked += p.acked.Load()
		figs.PublishErrors += p.errored.Load()
	}
	figs.RateLimited = f.rateLimited.Load()
	sent := make([]int64, len(f.sentOK))
	for r := range f.sentOK {
		sent[r] = f.sentOK[r].Load()
	}
	f.mu.Lock()
	t := account(f.tracks, sent)
	f.mu.Unlock()
	figs.Expected, figs.Delivered = t.Expected, t.Delivered
	figs.Lost, figs.Extra = t.Lost, t.Extra
	figs.Duplicates, figs.OutOfOrder = t.Duplicates, t.OutOfOrder
	figs.MembersWithLoss, figs.RoomsWithLoss = t.MembersWithLoss, t.RoomsWithLoss
	if figs.PublishS > 0 {
		figs.MsgsPerS = round3(float64(figs.Acked) / figs.PublishS)
		figs.DeliveriesPerS = round3(float64(figs.Delivered) / figs.PublishS)
	}
	figs.Latency = f.env.live.lat.snapshot().summary()
	figs.AckLatency = f.ackLat.snapshot().summary()
}

// tally is the delivery accounting of a fanout run.
type tally struct {
	Expected, Delivered, Lost, Extra, Duplicates, OutOfOrder int64
	MembersWithLoss, RoomsWithLoss                           int
}

// account compares what each connection received in each room it
// joined (tracks) with the publishes acknowledged per room (sent).
func account(tracks []*track, sent []int64) tally {
	var t tally
	lossy := map[int]bool{}
	for _, tr := range tracks {
		exp, got := sent[tr.room], tr.got.Load()
		t.Expected += exp
		t.Delivered += got
		t.Duplicates += tr.dups.Load()
		t.OutOfOrder += tr.ooo.Load()
		switch {
		case got < exp:
			t.Lost += exp - got
			t.MembersWithLoss++
			lossy[tr.room] = true
		case got > exp:
			t.Extra += got - exp
		}
	}
	t.RoomsWithLoss = len(lossy)
	return t
}
