package server

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"

	"github.com/chatd/chatd/internal/auth"
	"github.com/chatd/chatd/internal/clientip"
	"github.com/chatd/chatd/internal/hub"
	"github.com/chatd/chatd/internal/protocol"
	"github.com/chatd/chatd/internal/ratelimit"
	"github.com/chatd/chatd/internal/ws"
)

// Subprotocol is the WebSocket subprotocol of PROTOCOL.md.
const Subprotocol = "chat"

// drainBatches is how many batches Drain closes connections in.
const drainBatches = 10

// Deps are what the server is built on; cmd/chatd chooses them.
type Deps struct {
	Broker hub.Broker
	// UserLimiter is the per-user rate limit; nil means a local one.
	UserLimiter ratelimit.UserLimiter
	Logger      zerolog.Logger
	// Web, when set, is served at / (the browser client).
	Web http.Handler
	// Version names the build, for /metrics (chatd_build_info); empty
	// reads as "unknown".
	Version string
}

// Server is a chatd node's HTTP and WebSocket front.
type Server struct {
	cfg         Config
	log         zerolog.Logger
	broker      hub.Broker
	hub         *hub.Hub
	verifier    *auth.Verifier
	signer      *auth.Signer // set when POST /api/dev/token signs tokens
	devMode     bool         // no key was configured: the secret is random
	devTokens   *ratelimit.IPLimiter
	origins     *auth.OriginPolicy
	clientIPs   *clientip.Resolver
	upgrades    *ratelimit.IPLimiter
	connCap     *ratelimit.ConnCap
	userLimiter ratelimit.UserLimiter
	metrics     *metrics
	handler     http.Handler
	// upgradeHandler serves upgrades that upgradeListener read itself:
	// handleWS with the router's middleware.
	upgradeHandler http.Handler
	acceptOpts     *ws.AcceptOptions
	// brokerWaits is false when no broker or user-limiter call can wait
	// (see brokerContext).
	brokerWaits bool

	connSeq  atomic.Uint64
	draining atomic.Bool
	// handlers counts the request handlers and the sessions' goroutines,
	// which outlive their upgrade requests; Serve waits for both.
	handlers sync.WaitGroup

	mu       sync.Mutex
	sessions map[*session]struct{}
	idle     *sync.Cond // signalled when sessions becomes empty
}

// New builds a server. With no key in cfg.Auth it runs in dev mode with a
// random secret (DevMode reports it).
func New(cfg Config, deps Deps) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Broker == nil {
		return nil, errors.New("server: no broker")
	}
	s := &Server{cfg: cfg, log: deps.Logger, broker: deps.Broker, sessions: map[*session]struct{}{}}
	s.idle = sync.NewCond(&s.mu)

	authCfg := cfg.Auth
	var err error
	if len(authCfg.Secret) == 0 && len(authCfg.PublicKeyPEM) == 0 {
		s.devMode = true
		if authCfg.Secret, err = auth.NewDevSecret(); err != nil {
			return nil, fmt.Errorf("dev mode secret: %w", err)
		}
	}
	if s.devMode || cfg.DevTokens {
		// Validate refused DevTokens with a public key: here the key is
		// a secret, random or configured.
		if s.signer, err = auth.NewSigner(authCfg); err != nil {
			return nil, fmt.Errorf("dev token signer: %w", err)
		}
		// A limiter of its own, as generous as the upgrade limit: every
		// connection of a browser client may need a token first, and
		// signing costs far less than a connection.
		s.devTokens = ratelimit.NewIPLimiter(cfg.UpgradeRate, cfg.UpgradeBurst, ratelimit.DefaultMaxIPs)
	}
	if s.verifier, err = auth.NewVerifier(authCfg); err != nil {
		return nil, fmt.Errorf("token verification: %w", err)
	}
	if s.origins, err = auth.NewOriginPolicy(cfg.AllowedOrigins); err != nil {
		return nil, fmt.Errorf("allowed origins: %w", err)
	}
	if s.clientIPs, err = clientip.NewResolver(cfg.TrustedProxies); err != nil {
		return nil, fmt.Errorf("trusted proxies: %w", err)
	}
	s.upgrades = ratelimit.NewIPLimiter(cfg.UpgradeRate, cfg.UpgradeBurst, ratelimit.DefaultMaxIPs)
	s.connCap = ratelimit.NewConnCap(cfg.MaxConns)
	s.userLimiter = deps.UserLimiter
	if s.userLimiter == nil {
		s.userLimiter = ratelimit.NewLocalUserLimiter(cfg.UserRate, cfg.UserBurst)
	}
	_, memBroker := deps.Broker.(*hub.MemoryBroker)
	_, localLimiter := s.userLimiter.(*ratelimit.LocalUserLimiter)
	s.brokerWaits = !memBroker || !localLimiter
	s.hub = hub.New(deps.Broker)
	s.metrics = newMetrics(cfg.NodeID, deps.Version,
		func() float64 { return float64(s.hub.Deliveries()) },
		func() float64 { return float64(s.hub.Rooms()) })
	if c, ok := deps.Broker.(prometheus.Collector); ok {
		// A broker with metrics of its own (Redis) reports them here,
		// labelled with the node like the rest.
		prometheus.WrapRegistererWith(prometheus.Labels{"node": cfg.NodeID}, s.metrics.reg).MustRegister(c)
	}
	s.acceptOpts = &ws.AcceptOptions{
		Options: ws.Options{
			ReadLimit:    cfg.ReadLimit,
			PingInterval: cfg.Heartbeat,
			PongTimeout:  cfg.PongTimeout,
			WriteTimeout: cfg.WriteTimeout,
		},
		Subprotocols: []string{Subprotocol},
		CheckOrigin:  func(*http.Request) bool { return true }, // checked before, with the allow-list
		Compression:  cfg.Compression,
	}
	s.handler = s.routes(deps.Web)
	s.upgradeHandler = s.recoverer(http.HandlerFunc(s.handleWS))
	if debugEnabled(s.log) {
		// The request log of an upgrade is at debug level: without it,
		// nothing is timed and the writer is not wrapped.
		s.upgradeHandler = s.recoverer(s.requestLog(http.HandlerFunc(s.handleWS)))
	}
	return s, nil
}

// DevMode reports whether the server made its own secret (no key was
// configured) and serves POST /api/dev/token.
func (s *Server) DevMode() bool { return s.devMode }

// DevTokens reports whether POST /api/dev/token hands out tokens: in dev
// mode, or with Config.DevTokens and a secret.
func (s *Server) DevTokens() bool { return s.signer != nil }

// Handler returns the HTTP handler with every route.
func (s *Server) Handler() http.Handler { return s.handler }

// Hub returns the node's hub.
func (s *Server) Hub() *hub.Hub { return s.hub }

func (s *Server) routes(web http.Handler) http.Handler {
	r := chi.NewRouter()
	r.Use(s.recoverer, s.requestLog)
	r.Get("/ws", s.handleWS)
	r.Get("/healthz", s.handleHealthz)
	r.Get("/readyz", s.handleReadyz)
	r.Handle("/metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	// Registered for every method first, then POST over it: other
	// methods get a 405 rather than falling through to /api/*.
	r.HandleFunc("/api/rooms/{room}/messages", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "use POST")
	})
	r.Post("/api/rooms/{room}/messages", s.handlePublish)
	notFound := func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such endpoint")
	}
	// GET says whether dev sign-in is available, so that a page can
	// offer it without a request that fails; POST signs, or is a 404
	// when the server does not hand out tokens.
	r.Get("/api/dev/token", s.handleDevTokenInfo)
	if s.signer != nil {
		r.Post("/api/dev/token", s.handleDevToken)
	} else {
		r.Post("/api/dev/token", notFound)
	}
	// Anything else at /ws is a handshake error, not a 405 from the router.
	r.HandleFunc("/ws", s.handleWS)
	// API paths never reach the web client, whatever it serves: without
	// dev mode, POST /api/dev/token is a JSON 404.
	r.HandleFunc("/api/*", notFound)
	if web != nil {
		r.Get("/*", web.ServeHTTP)
		r.Head("/*", web.ServeHTTP)
	}
	r.NotFound(notFound)
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "method not allowed")
	})
	return r
}

// handleWS is the upgrade: every check of PROTOCOL.md §1, in its order,
// before the connection is upgraded.
func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	ip := s.clientIPs.ClientIP(r)
	// Built only for a refusal: an upgrade that succeeds logs nothing here.
	log := func() *zerolog.Logger {
		l := s.log.With().Str("ip", ip.String()).Logger()
		return &l
	}
	reject := func(status int, code, reason, msg string) {
		s.metrics.rejections.WithLabelValues(reason).Inc()
		log().Info().Int("status", status).Str("reason", reason).Msg("upgrade refused")
		writeError(w, status, code, msg)
	}
	if herr := ws.CheckRequest(r); herr != nil {
		switch herr.Status {
		case http.StatusUpgradeRequired:
			w.Header().Set("Sec-WebSocket-Version", "13")
			reject(herr.Status, "upgrade_required", "version", herr.Message)
		case http.StatusMethodNotAllowed:
			// PROTOCOL.md §1 answers every method and header failure
			// with 400; Allow still says what would work.
			w.Header().Set("Allow", http.MethodGet)
			reject(http.StatusBadRequest, "bad_request", "method", herr.Message)
		default:
			reject(herr.Status, "bad_request", "handshake", herr.Message)
		}
		return
	}
	if !s.origins.Allow(r) {
		reject(http.StatusForbidden, "forbidden", "origin", "origin "+r.Header.Get("Origin")+" is not allowed")
		return
	}
	token, source := auth.TokenFromRequest(r)
	if token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="chatd"`)
		s.metrics.authFailures.WithLabelValues("missing").Inc()
		reject(http.StatusUnauthorized, "unauthorized", "token_missing", "a token is required: Authorization: Bearer, the access_token.<jwt> subprotocol, or ?access_token=")
		return
	}
	claims, err := s.verifier.Verify(token)
	if err != nil {
		reason := auth.Reason(err)
		s.metrics.authFailures.WithLabelValues(reason).Inc()
		w.Header().Set("WWW-Authenticate", `Bearer realm="chatd", error="invalid_token"`)
		log().Info().Str("source", source).Str("auth_reason", reason).Msg("token refused")
		reject(http.StatusUnauthorized, "unauthorized", "token_"+reason, "token refused: "+reason)
		return
	}
	if !auth.OffersSubprotocol(r, Subprotocol) {
		reject(http.StatusBadRequest, "bad_request", "subprotocol", `the client must offer the "chat" subprotocol in Sec-WebSocket-Protocol`)
		return
	}
	if s.draining.Load() {
		w.Header().Set("Retry-After", "1")
		reject(http.StatusServiceUnavailable, "unavailable", "draining", "this node is shutting down; connect to another")
		return
	}
	if ok, retry := s.upgrades.Allow(ip, time.Now()); !ok {
		s.metrics.rateLimited.WithLabelValues("upgrade").Inc()
		w.Header().Set("Retry-After", ratelimit.RetryAfterSeconds(retry))
		reject(http.StatusTooManyRequests, "rate_limited", "upgrade_rate", "too many connection attempts from your address")
		return
	}
	if !s.connCap.TryAcquire() {
		w.Header().Set("Retry-After", strconv.Itoa(1+rand.IntN(5)))
		reject(http.StatusServiceUnavailable, "unavailable", "capacity", "this node is at its connection limit; retry or connect to another")
		return
	}

	// The welcome (PROTOCOL.md §4: the first message on every
	// connection) goes out in the same write as the 101 response: one
	// write and one segment fewer per connection, and nothing can be
	// queued before it.
	// One allocation, the string itself (a node id is at most 64 bytes).
	var idBuf [80]byte
	id := string(strconv.AppendUint(append(append(idBuf[:0], s.cfg.NodeID...), '-'), s.connSeq.Add(1), 36))
	member := protocol.Member{User: claims.Subject, Name: displayName(claims)}
	// Built on the stack: Accept copies it into the response.
	var welcomeBuf [320]byte
	welcome := protocol.AppendWelcome(welcomeBuf[:0], member.User, member.Name, s.cfg.NodeID, id, int64(s.cfg.Heartbeat/time.Second))
	conn, err := ws.AcceptGreeting(w, r, s.acceptOpts, welcome)
	if err != nil {
		s.connCap.Release()
		log().Info().Err(err).Msg("upgrade failed")
		return
	}
	sess := newSession(s, conn, id, claims, member)
	if !s.register(sess) {
		// The drain began after the welcome went out with the 101: the
		// client is told as every connection of the draining node is
		// (PROTOCOL.md §6), then closed.
		_ = conn.WriteMessage(ws.Text, protocol.AppendDraining(nil, rand.Int64N(max(s.cfg.DrainWindow.Milliseconds(), 1))))
		_ = conn.Close(ws.StatusGoingAway, "node shutting down; reconnect to another")
		s.connCap.Release()
		return
	}
	s.metrics.connections.Inc()
	s.metrics.connectsTotal.Inc()
	if ev := sess.logAt(zerolog.DebugLevel); ev != nil {
		// Checked first: the address is formatted only for a log line.
		ev.Str("ip", ip.String()).Str("token_source", source).Bool("deflate", conn.Compressed()).Msg("connected")
	}
	// The session arms its token's expiry and reads on a goroutine of its
	// own, which parks the connection once the client goes quiet (see
	// session.readLoop), and this handler returns: net/http then lets go
	// of the request, its context and its read and write buffers, about
	// 10 KB that every idle connection would otherwise keep. Serve waits
	// for sessions like for handlers, until sessionEnded.
	s.handlers.Add(1)
	sess.start()
	if uw, ok := w.(*upgradeResponse); ok {
		// Sniffed by chatd: the goroutine that read the request reads on,
		// once it has let go of what it held for the request, with the
		// stack it grew serving it; a new goroutine would grow its own
		// while serving the first command.
		uw.then = sess.resume
		return
	}
	go sess.resume() // readLoop, bound already: no closure to allocate here
}

// sessionEnded is called by a session once it has cleaned up: its place
// under the connection cap is free again.
func (s *Server) sessionEnded() {
	s.metrics.connections.Dec()
	s.connCap.Release()
	s.handlers.Done()
}

func (s *Server) register(sess *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		return false
	}
	s.sessions[sess] = struct{}{}
	return true
}

func (s *Server) unregister(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, sess)
	if len(s.sessions) == 0 {
		s.idle.Broadcast()
	}
}

// Connections is the number of open sessions.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Serve serves HTTP on ln until ctx is cancelled, then drains: it stops
// accepting, tells every client to reconnect elsewhere (draining, then
// close 1001, spread over DrainWindow), and waits for the closing
// handshakes up to DrainTimeout. tlsCert and tlsKey, when set, serve TLS.
func (s *Server) Serve(ctx context.Context, ln net.Listener, tlsCert, tlsKey string) error {
	// Every request is counted until its handler has returned, log line
	// included, and every session until its goroutine ends: net/http
	// forgets a connection once it is hijacked, and Serve must not return
	// while a WebSocket session still runs.
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.handlers.Add(1)
			defer s.handlers.Done()
			s.handler.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		// net/http's own complaints (TLS handshake errors from scanners,
		// broken connections) go to our log, at debug level: they are
		// about clients, not about this node.
		ErrorLog: stdlog.New(httpErrorLog{s.log}, "", 0),
	}
	if tlsCert != "" {
		// TLS is terminated here, not by net/http, so that its errors are
		// JSON too (see tlsListener); WebSocket needs HTTP/1.1 (Upgrade), so
		// h2 is not offered.
		tl, err := newTLSListener(ln, tlsCert, tlsKey, s.log)
		if err != nil {
			_ = ln.Close()
			return err
		}
		ln = tl
	} else {
		// Upgrades are served without net/http (see upgradeListener).
		ln = s.newUpgradeListener(ln)
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.log.Info().Int("connections", s.Connections()).Msg("shutting down: draining connections")
	drainCtx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	defer cancel()
	s.draining.Store(true)
	shutdownDone := make(chan error, 1)
	go func() { shutdownDone <- hs.Shutdown(drainCtx) }()
	s.Drain(drainCtx)
	if err := <-shutdownDone; err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w", err)
	}
	<-errc
	// No request starts any more: the listener is closed and every
	// connection is idle (closed), hijacked (counted), or was cut by the
	// drain timeout. What is left are the WebSocket handlers finishing.
	finished := make(chan struct{})
	go func() { s.handlers.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(brokerTimeout + time.Second):
		s.log.Error().Msg("request handlers still running after the drain")
	}
	s.hub.Close()
	s.log.Info().Int("left_open", s.Connections()).Msg("drained")
	return nil
}

// Drain marks the node not ready, sends every connection `draining` with
// a reconnect delay spread over DrainWindow, closes the connections with
// 1001 in batches over the same window, and waits until they are gone or
// ctx ends.
//
// The connections are shuffled into drainBatches batches; batch i is
// closed at i*DrainWindow/drainBatches and told to reconnect at a random
// moment of its own slice of the window, so that a client's reconnect
// delay runs out about when, or shortly after, its close arrives, and the
// reconnects reach the other nodes evenly spread over the window.
func (s *Server) Drain(ctx context.Context) {
	s.draining.Store(true)
	// The clients will be back on other nodes in a moment: their
	// presence lapses rather than being withdrawn, so that the others in
	// their rooms see no leave and join again (with a broker that lets
	// claims expire; with one node there is no other node to see it).
	s.hub.Drain()
	s.mu.Lock()
	all := make([]*session, 0, len(s.sessions))
	for sess := range s.sessions {
		all = append(all, sess)
	}
	s.mu.Unlock()
	rand.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })

	slot := s.cfg.DrainWindow / drainBatches
	slotMS := max(slot.Milliseconds(), 1)
	var batches [drainBatches][]*session
	for i, sess := range all {
		b := i * drainBatches / len(all)
		batches[b] = append(batches[b], sess)
		sess.reply(protocol.AppendDraining(replyBuffer(replyOverhead), int64(b)*slotMS+rand.Int64N(slotMS)))
	}
	start := time.Now()
	for b := range batches {
		if len(batches[b]) == 0 {
			continue
		}
		if wait := time.Until(start.Add(time.Duration(b) * slot)); wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				s.closeRemaining()
				return
			case <-timer.C:
			}
		}
		for _, sess := range batches[b] {
			sess.startClose(ws.StatusGoingAway, "node shutting down; reconnect to another")
		}
	}

	if !s.waitIdle(ctx) {
		s.closeRemaining()
	}
}

// waitIdle waits until no session is left or ctx ends, and reports
// whether none is left.
func (s *Server) waitIdle(ctx context.Context) bool {
	stop := context.AfterFunc(ctx, func() {
		s.mu.Lock()
		s.idle.Broadcast() // let the waiter see ctx is done
		s.mu.Unlock()
	})
	defer stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.sessions) > 0 && ctx.Err() == nil {
		s.idle.Wait()
	}
	return len(s.sessions) == 0
}

// closeRemaining drops the connections a drain did not close in time,
// without a closing handshake, and waits a moment for their sessions to
// end, so that none outlives Serve.
func (s *Server) closeRemaining() {
	s.mu.Lock()
	if len(s.sessions) > 0 {
		s.log.Warn().Int("connections", len(s.sessions)).Msg("drain timeout: dropping the connections still open")
	}
	for sess := range s.sessions {
		_ = sess.conn.CloseNow()
	}
	s.mu.Unlock()
	// A session whose transport is closed ends at once, after leaving its
	// rooms (broker calls bounded by brokerTimeout).
	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout+time.Second)
	defer cancel()
	if !s.waitIdle(ctx) {
		s.log.Error().Int("connections", s.Connections()).Msg("sessions did not end after their connections were dropped")
	}
}

// httpErrorLog is the io.Writer behind http.Server.ErrorLog.
type httpErrorLog struct{ log zerolog.Logger }

func (w httpErrorLog) Write(p []byte) (int, error) {
	w.log.Debug().Str("source", "net/http").Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}

// Ready reports why the node is not ready, or nil.
func (s *Server) Ready(ctx context.Context) error {
	if s.draining.Load() {
		return errors.New("draining")
	}
	if err := s.broker.Ready(ctx); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	return nil
}
