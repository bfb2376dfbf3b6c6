package conformance_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/chatd/chatd/internal/ws"
)

// ---- names ----

var nameSeq atomic.Int64

// fresh returns a name no other check uses (a valid room name and user id).
func fresh(prefix string) string {
	return prefix + "-" + strconv.FormatInt(nameSeq.Add(1), 36) + "." + strconv.FormatInt(rand.Int64N(1<<30), 36)
}

// displayName is the name claim the checks give a user.
func displayName(user string) string { return "Name of " + user }

// ---- tokens ----

// claims are a valid token's claims for user: sub, name and exp in an hour.
func claims(user string) jwt.MapClaims {
	return jwt.MapClaims{"sub": user, "name": displayName(user), "exp": time.Now().Add(time.Hour).Unix()}
}

// sign signs c with HS256 and the nodes' secret.
func sign(t testing.TB, c jwt.MapClaims) string {
	t.Helper()
	return signWith(t, jwt.SigningMethodHS256, []byte(secret), c)
}

func signWith(t testing.TB, m jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return s
}

// token is a valid token for user.
func token(t testing.TB, user string) string { return sign(t, claims(user)) }

// ---- events ----

// event is one JSON object the server sent.
type event struct {
	raw []byte
	m   map[string]any
	at  time.Time // when it was read
}

func (e event) String() string { return string(e.raw) }
func (e event) typ() string    { return e.str("type") }
func (e event) has(k string) bool {
	_, ok := e.m[k]
	return ok
}

func (e event) str(k string) string {
	s, _ := e.m[k].(string)
	return s
}

// int returns a field that is a JSON integer.
func (e event) int(k string) (int64, bool) {
	n, ok := e.m[k].(json.Number)
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(string(n), 10, 64)
	return v, err == nil
}

func (e event) bool(k string) (bool, bool) {
	b, ok := e.m[k].(bool)
	return b, ok
}

func (e event) list(k string) []any {
	l, _ := e.m[k].([]any)
	return l
}

// messages returns the list k of message objects as events.
func (e event) messages(k string) []event {
	var out []event
	for _, v := range e.list(k) {
		m, _ := v.(map[string]any)
		raw, _ := json.Marshal(m)
		out = append(out, event{raw: raw, m: m})
	}
	return out
}

func decodeEvent(raw []byte) (event, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return event{}, err
	}
	if d.More() {
		return event{}, errors.New("more than one JSON value in a message")
	}
	return event{raw: slices.Clone(raw), m: m}, nil
}

// ids returns the id of every event.
func ids(es []event) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.str("id")
	}
	return out
}

// ---- message ids ----

var idRE = regexp.MustCompile(`^([0-9]+)-([0-9]+)$`)

// parseID splits a message id into its two numbers.
func parseID(id string) (ms, seq uint64, ok bool) {
	m := idRE.FindStringSubmatch(id)
	if m == nil {
		return 0, 0, false
	}
	ms, err1 := strconv.ParseUint(m[1], 10, 64)
	seq, err2 := strconv.ParseUint(m[2], 10, 64)
	return ms, seq, err1 == nil && err2 == nil
}

// idLess compares ids numerically, part by part (PROTOCOL.md §5).
func idLess(a, b string) bool {
	am, as, _ := parseID(a)
	bm, bs, _ := parseID(b)
	return am < bm || am == bm && as < bs
}

// checkIncreasing reports ids that are not strictly increasing.
func checkIncreasing(t testing.TB, what string, ids []string) {
	t.Helper()
	for i := 1; i < len(ids); i++ {
		if !idLess(ids[i-1], ids[i]) {
			t.Errorf("%s: id %q at %d is not after %q", what, ids[i], i, ids[i-1])
			return
		}
	}
}

// ---- the shape of every event (PROTOCOL.md §4) ----

type kind int

const (
	kString kind = iota
	kInt
	kBool
	kID
	kMembers
	kMessages
)

type field struct {
	kind     kind
	optional bool
	enum     []string
}

var (
	str    = field{kind: kString}
	optStr = field{kind: kString, optional: true}
	integ  = field{kind: kInt}
	boolF  = field{kind: kBool}
	idF    = field{kind: kID}
)

// errorCodes are the codes of PROTOCOL.md §4.
var errorCodes = []string{"bad_request", "unknown_type", "forbidden", "not_joined", "rate_limited", "too_large", "unavailable", "internal"}

// schema is every server event of PROTOCOL.md §4 with its fields; a field
// not listed is not expected (docs/protocol.md §4 documents no other).
var schema = map[string]map[string]field{
	"welcome":   {"user": str, "name": str, "node": str, "conn": str, "heartbeat": integ},
	"joined":    {"ref": optStr, "room": str, "members": {kind: kMembers}, "history": {kind: kMessages}, "recovered": boolF},
	"left":      {"ref": optStr, "room": str},
	"sent":      {"ref": optStr, "room": str, "id": idF, "ts": integ},
	"message":   {"room": str, "id": idF, "from": str, "name": str, "text": str, "ts": integ, "cid": optStr},
	"draining":  {"reconnect_ms": integ},
	"history":   {"ref": optStr, "room": str, "messages": {kind: kMessages}, "more": boolF},
	"presence":  {"room": str, "user": str, "name": str, "state": {kind: kString, enum: []string{"join", "leave"}}},
	"typing":    {"room": str, "user": str, "name": str},
	"refreshed": {"ref": optStr, "exp": integ},
	"pong":      {"ref": optStr},
	"error":     {"ref": optStr, "code": {kind: kString, enum: errorCodes}, "message": str, "retry_ms": {kind: kInt, optional: true}},
}

// validate checks an event against the schema and returns what is wrong.
func validate(m map[string]any) []string {
	typ, _ := m["type"].(string)
	fields, ok := schema[typ]
	if !ok {
		return []string{fmt.Sprintf("unknown event type %q", typ)}
	}
	var bad []string
	for k, v := range m {
		if k == "type" {
			continue
		}
		f, ok := fields[k]
		if !ok {
			bad = append(bad, fmt.Sprintf("%s has the field %q, which PROTOCOL.md does not list", typ, k))
			continue
		}
		if msg := checkKind(k, f, v); msg != "" {
			bad = append(bad, typ+"."+msg)
		}
	}
	for k, f := range fields {
		if _, ok := m[k]; !ok && !f.optional {
			bad = append(bad, fmt.Sprintf("%s lacks the field %q", typ, k))
		}
	}
	if typ == "error" {
		_, hasRetry := m["retry_ms"]
		if code, _ := m["code"].(string); hasRetry != (code == "rate_limited") {
			bad = append(bad, fmt.Sprintf("error %q with retry_ms present=%v (only rate_limited carries it)", code, hasRetry))
		}
		if r, ok := m["retry_ms"].(json.Number); ok {
			if n, err := strconv.ParseInt(string(r), 10, 64); err != nil || n < 1 {
				bad = append(bad, fmt.Sprintf("error.retry_ms %s is not a positive integer", r))
			}
		}
	}
	if typ == "message" || typ == "sent" {
		if ts, ok := m["ts"].(json.Number); ok {
			n, _ := strconv.ParseInt(string(ts), 10, 64)
			if now := time.Now().UnixMilli(); n < now-48*3600*1000 || n > now+60*1000 {
				bad = append(bad, fmt.Sprintf("%s.ts %d is not Unix milliseconds of about now (%d)", typ, n, now))
			}
		}
	}
	return bad
}

func checkKind(k string, f field, v any) string {
	switch f.kind {
	case kString:
		s, ok := v.(string)
		if !ok {
			return fmt.Sprintf("%s is %T, not a string", k, v)
		}
		if f.enum != nil && !slices.Contains(f.enum, s) {
			return fmt.Sprintf("%s %q is not one of %v", k, s, f.enum)
		}
		if k == "ref" && s == "" {
			return "ref is present but empty"
		}
	case kInt:
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Sprintf("%s is %T, not a number", k, v)
		}
		if _, err := strconv.ParseInt(string(n), 10, 64); err != nil {
			return fmt.Sprintf("%s %s is not an integer", k, n)
		}
	case kBool:
		if _, ok := v.(bool); !ok {
			return fmt.Sprintf("%s is %T, not a bool", k, v)
		}
	case kID:
		s, ok := v.(string)
		if !ok {
			return fmt.Sprintf("%s is %T, not a string", k, v)
		}
		if _, _, ok := parseID(s); !ok {
			return fmt.Sprintf("%s %q is not of the form <ms>-<seq>", k, s)
		}
	case kMembers:
		l, ok := v.([]any)
		if !ok {
			return fmt.Sprintf("%s is %T, not a list", k, v)
		}
		for _, e := range l {
			o, ok := e.(map[string]any)
			if !ok || len(o) != 2 {
				return fmt.Sprintf("%s holds %v, not {user,name}", k, e)
			}
			if _, ok := o["user"].(string); !ok {
				return fmt.Sprintf("%s holds %v, not {user,name}", k, e)
			}
			if _, ok := o["name"].(string); !ok {
				return fmt.Sprintf("%s holds %v, not {user,name}", k, e)
			}
		}
	case kMessages:
		l, ok := v.([]any)
		if !ok {
			return fmt.Sprintf("%s is %T, not a list", k, v)
		}
		for _, e := range l {
			o, ok := e.(map[string]any)
			if !ok || o["type"] != "message" {
				return fmt.Sprintf("%s holds %v, not a message", k, e)
			}
			if bad := validate(o); len(bad) > 0 {
				return fmt.Sprintf("%s: %s", k, strings.Join(bad, "; "))
			}
		}
	}
	return ""
}

// ---- WebSocket clients ----

// client is a connection to chatd through internal/ws, with a goroutine
// reading every event into a queue.
type client struct {
	t       testing.TB
	user    string
	node    *node
	conn    *ws.Conn
	welcome event

	mu         sync.Mutex
	pending    []event // received and not yet taken by a wait
	all        []event // everything received, in order
	violations []string
	err        error     // why reading ended
	endedAt    time.Time // when
	notify     chan struct{}
	done       chan struct{}

	refSeq atomic.Int64
}

// dialOptions are how a check connects.
type dialOptions struct {
	// token goes into Authorization: Bearer unless noHeader.
	token    string
	noHeader bool
	// query is appended to the URL (access_token=...).
	query string
	// subprotocols offered; default ["chat"].
	subprotocols []string
	header       http.Header
	compression  bool
	fragment     int
	netDial      func(ctx context.Context, network, addr string) (net.Conn, error)
	// noReader leaves the connection unread after welcome, until
	// startReading.
	noReader bool
}

// connect dials n as user with a valid token.
func connect(t testing.TB, n *node, user string) *client {
	t.Helper()
	return connectToken(t, n, user, token(t, user))
}

// connectToken dials n with tok in the Authorization header.
func connectToken(t testing.TB, n *node, user, tok string) *client {
	t.Helper()
	c, err := dial(t, n, user, dialOptions{token: tok})
	if err != nil {
		t.Fatalf("connect %s to %s: %v", user, n.id, err)
	}
	return c
}

// dial connects and waits for welcome, which must be the first message.
func dial(t testing.TB, n *node, user string, o dialOptions) (*client, error) {
	t.Helper()
	do := &ws.DialOptions{
		Header:         http.Header{},
		Subprotocols:   o.subprotocols,
		Compression:    o.compression,
		NetDialContext: o.netDial,
	}
	do.ReadLimit = 64 << 20
	do.FragmentSize = o.fragment
	do.CloseTimeout = 2 * time.Second
	if do.Subprotocols == nil {
		do.Subprotocols = []string{"chat"}
	}
	for k, v := range o.header {
		do.Header[k] = v
	}
	if o.token != "" && !o.noHeader {
		do.Header.Set("Authorization", "Bearer "+o.token)
	}
	url := n.url()
	if o.query != "" {
		url += "?" + o.query
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conn, err := ws.Dial(ctx, url, do)
	if err != nil {
		return nil, err
	}
	c := &client{t: t, user: user, node: n, conn: conn, notify: make(chan struct{}, 1), done: make(chan struct{})}
	t.Cleanup(c.cleanup)
	if got := conn.Subprotocol(); got != "chat" {
		t.Errorf("subprotocol answered %q, want chat", got)
	}
	if o.noReader {
		// The welcome is still read, the connection then left alone.
		_, p, err := conn.ReadMessage(nil)
		if err != nil {
			return nil, fmt.Errorf("reading welcome: %w", err)
		}
		e, err := decodeEvent(p)
		if err != nil || e.typ() != "welcome" {
			return nil, fmt.Errorf("first message %s is not welcome", p)
		}
		c.welcome = e
		return c, nil
	}
	go c.read()
	e, ok := c.next(wait)
	if !ok {
		return nil, fmt.Errorf("no welcome: %v", c.endErr())
	}
	if e.typ() != "welcome" {
		t.Errorf("the first message is %s, not welcome (PROTOCOL.md §4)", e)
	}
	c.welcome = e
	return c, nil
}

// startReading starts reading a connection dialled with noReader.
func (c *client) startReading() { go c.read() }

func (c *client) cleanup() {
	_ = c.conn.CloseNow()
	c.mu.Lock()
	v := c.violations
	c.mu.Unlock()
	for i, s := range v {
		if i == 5 {
			c.t.Errorf("... and %d more", len(v)-5)
			break
		}
		c.t.Errorf("%s on %s: event not as PROTOCOL.md §4 says: %s", c.user, c.node.id, s)
	}
}

func (c *client) read() {
	defer close(c.done)
	var buf []byte
	for {
		typ, p, err := c.conn.ReadMessage(buf[:0])
		buf = p
		if err != nil {
			c.mu.Lock()
			c.err, c.endedAt = err, time.Now()
			c.mu.Unlock()
			return
		}
		var e event
		var bad []string
		if typ != ws.Text {
			bad = append(bad, fmt.Sprintf("a %v message from the server (PROTOCOL.md §2: text only)", typ))
		} else if e, err = decodeEvent(p); err != nil {
			bad = append(bad, fmt.Sprintf("a message that is not one JSON object: %q: %v", p, err))
		} else {
			e.at = time.Now()
			bad = validate(e.m)
		}
		c.mu.Lock()
		for _, b := range bad {
			c.violations = append(c.violations, b+": "+string(p))
		}
		if e.m != nil {
			c.pending = append(c.pending, e)
			c.all = append(c.all, e)
		}
		c.mu.Unlock()
		select {
		case c.notify <- struct{}{}:
		default:
		}
	}
}

func (c *client) endErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// next takes the next pending event.
func (c *client) next(d time.Duration) (event, bool) {
	return c.take(d, func(event) bool { return true })
}

// take waits up to d for a pending event matching pred and takes it;
// events before it stay pending.
func (c *client) take(d time.Duration, pred func(event) bool) (event, bool) {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		for i, e := range c.pending {
			if pred(e) {
				c.pending = slices.Delete(c.pending, i, i+1)
				c.mu.Unlock()
				return e, true
			}
		}
		c.mu.Unlock()
		select {
		case <-c.notify:
		case <-c.done:
			// Read what arrived before the end once more.
			c.mu.Lock()
			for i, e := range c.pending {
				if pred(e) {
					c.pending = slices.Delete(c.pending, i, i+1)
					c.mu.Unlock()
					return e, true
				}
			}
			c.mu.Unlock()
			return event{}, false
		case <-deadline.C:
			return event{}, false
		}
	}
}

// await takes the first pending event matching pred, failing t when none
// comes within wait.
func (c *client) await(what string, pred func(event) bool) event {
	c.t.Helper()
	e, ok := c.take(wait, pred)
	if !ok {
		c.t.Fatalf("%s on %s: no %s within %v (connection: %v); pending: %v", c.user, c.node.id, what, wait, c.endErr(), c.pendingDump())
	}
	return e
}

// none fails t when an event matching pred is pending or arrives within d.
func (c *client) none(what string, d time.Duration, pred func(event) bool) {
	c.t.Helper()
	if e, ok := c.take(d, pred); ok {
		c.t.Errorf("%s on %s: unexpected %s: %s", c.user, c.node.id, what, e)
	}
}

func (c *client) pendingDump() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for i, e := range c.pending {
		if i == 10 {
			fmt.Fprintf(&b, " ... (%d in all)", len(c.pending))
			break
		}
		b.WriteString(" " + e.String())
	}
	return b.String()
}

// drop discards every pending event.
func (c *client) drop() {
	c.mu.Lock()
	c.pending = nil
	c.mu.Unlock()
}

// write sends v as one JSON text message.
func (c *client) write(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.writeRaw(b)
}

func (c *client) writeRaw(b []byte) {
	c.t.Helper()
	if err := c.conn.WriteMessage(ws.Text, b); err != nil {
		c.t.Fatalf("%s: write: %v", c.user, err)
	}
}

// ref returns a new ref for a command of this client.
func (c *client) ref() string { return "r" + strconv.FormatInt(c.refSeq.Add(1), 10) }

// cmd sends a command with a fresh ref (unless it has one) and returns
// the reply carrying that ref.
func (c *client) cmd(v map[string]any) event {
	c.t.Helper()
	if _, ok := v["ref"]; !ok {
		v["ref"] = c.ref()
	}
	ref := v["ref"].(string)
	c.write(v)
	return c.await(fmt.Sprintf("reply to %v", v), func(e event) bool { return e.str("ref") == ref })
}

// must sends a command and fails t unless its reply has type want.
func (c *client) must(want string, v map[string]any) event {
	c.t.Helper()
	e := c.cmd(v)
	if e.typ() != want {
		c.t.Fatalf("%s on %s: %v answered %s, want %s", c.user, c.node.id, v, e, want)
	}
	return e
}

// wantError sends a command and checks that it is answered with error code.
func (c *client) wantError(code string, v map[string]any) event {
	c.t.Helper()
	e := c.cmd(v)
	if e.typ() != "error" || e.str("code") != code {
		c.t.Errorf("%s on %s: %v answered %s, want error %s", c.user, c.node.id, v, e, code)
	}
	return e
}

func (c *client) join(room string) event {
	c.t.Helper()
	return c.must("joined", map[string]any{"type": "join", "room": room})
}

func (c *client) joinSince(room, since string) event {
	c.t.Helper()
	return c.must("joined", map[string]any{"type": "join", "room": room, "since": since})
}

func (c *client) leave(room string) event {
	c.t.Helper()
	return c.must("left", map[string]any{"type": "leave", "room": room})
}

// post sends text to room and returns the sent reply.
func (c *client) post(room, text string) event {
	c.t.Helper()
	return c.must("sent", map[string]any{"type": "send", "room": room, "text": text})
}

func (c *client) ping() event {
	c.t.Helper()
	return c.must("pong", map[string]any{"type": "ping"})
}

// closed waits for the connection to end and returns how.
func (c *client) closed(d time.Duration) (*ws.CloseError, time.Time, bool) {
	select {
	case <-c.done:
	case <-time.After(d):
		return nil, time.Time{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var ce *ws.CloseError
	if !errors.As(c.err, &ce) {
		ce = &ws.CloseError{Code: ws.StatusAbnormalClosure, Err: c.err}
	}
	return ce, c.endedAt, true
}

// wantClose fails t unless the server closes the connection with code
// within d.
func (c *client) wantClose(code ws.StatusCode, d time.Duration) time.Time {
	c.t.Helper()
	ce, at, ok := c.closed(d)
	if !ok {
		c.t.Fatalf("%s on %s: still open after %v, want close %v", c.user, c.node.id, d, code)
	}
	if ce.Code != code || !ce.Remote {
		c.t.Fatalf("%s on %s: connection ended with %v, want close %v from the server", c.user, c.node.id, ce, code)
	}
	return at
}

// events returns everything received so far, in order.
func (c *client) events() []event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.all)
}

// ---- predicates ----

func isType(typ string) func(event) bool { return func(e event) bool { return e.typ() == typ } }

func isMessage(room string) func(event) bool {
	return func(e event) bool { return e.typ() == "message" && e.str("room") == room }
}

func isMessageID(id string) func(event) bool {
	return func(e event) bool { return e.typ() == "message" && e.str("id") == id }
}

func isPresence(room, user, state string) func(event) bool {
	return func(e event) bool {
		return e.typ() == "presence" && e.str("room") == room && e.str("user") == user && (state == "" || e.str("state") == state)
	}
}

func inRoom(room string) func(event) bool { return func(e event) bool { return e.str("room") == room } }

// messagesIn waits for n messages of room and returns them in arrival order.
func (c *client) messagesIn(room string, n int) []event {
	c.t.Helper()
	out := make([]event, 0, n)
	for len(out) < n {
		e, ok := c.take(wait, isMessage(room))
		if !ok {
			c.t.Fatalf("%s on %s: %d of %d messages of %s (connection: %v)", c.user, c.node.id, len(out), n, room, c.endErr())
		}
		out = append(out, e)
	}
	return out
}

// members returns joined.members as user → name.
func members(e event) map[string]string {
	out := map[string]string{}
	for _, v := range e.list("members") {
		o, _ := v.(map[string]any)
		u, _ := o["user"].(string)
		n, _ := o["name"].(string)
		out[u] = n
	}
	return out
}

// ---- raw HTTP and frames ----

// request is a handshake request written byte for byte.
type request struct {
	method, target, proto string
	headers               [][2]string
}

const sampleKey = "dGhlIHNhbXBsZSBub25jZQ==" // RFC 6455 §1.3

// upgrade returns a valid upgrade request to n with tok in Authorization.
func upgrade(n *node, tok string) *request {
	r := &request{method: "GET", target: "/ws", proto: "HTTP/1.1", headers: [][2]string{
		{"Host", n.addr},
		{"Upgrade", "websocket"},
		{"Connection", "Upgrade"},
		{"Sec-WebSocket-Key", sampleKey},
		{"Sec-WebSocket-Version", "13"},
		{"Sec-WebSocket-Protocol", "chat"},
	}}
	if tok != "" {
		r.set("Authorization", "Bearer "+tok)
	}
	return r
}

// set replaces header k (or adds it); an empty v removes it.
func (r *request) set(k, v string) *request {
	out := r.headers[:0:0]
	done := false
	for _, h := range r.headers {
		if strings.EqualFold(h[0], k) {
			if !done && v != "" {
				out = append(out, [2]string{k, v})
			}
			done = true
			continue
		}
		out = append(out, h)
	}
	if !done && v != "" {
		out = append(out, [2]string{k, v})
	}
	r.headers = out
	return r
}

func (r *request) bytes() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s %s\r\n", r.method, r.target, r.proto)
	for _, h := range r.headers {
		fmt.Fprintf(&b, "%s: %s\r\n", h[0], h[1])
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// rawConn is a TCP connection speaking HTTP and frames by hand.
type rawConn struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

// roundTrip sends r to n on a new TCP connection and reads the response;
// the body of a refusal is read whole. A 101 leaves the connection open
// for frames.
func roundTrip(t testing.TB, n *node, r *request) (*http.Response, []byte, *rawConn) {
	t.Helper()
	resp, body, rc, err := tryRoundTrip(t, n, r)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body, rc
}

func tryRoundTrip(t testing.TB, n *node, r *request) (*http.Response, []byte, *rawConn, error) {
	nc, err := net.DialTimeout("tcp", n.addr, wait)
	if err != nil {
		return nil, nil, nil, err
	}
	rc := &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(wait))
	if _, err := nc.Write(r.bytes()); err != nil {
		return nil, nil, nil, err
	}
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: r.method})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("reading the answer to %q: %w", r.bytes(), err)
	}
	var body []byte
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		_ = nc.Close()
	}
	_ = nc.SetDeadline(time.Time{})
	return resp, body, rc, nil
}

// openRaw completes a handshake with a valid token and reads welcome.
func openRaw(t testing.TB, n *node, user string) *rawConn {
	t.Helper()
	resp, body, rc := roundTrip(t, n, upgrade(n, token(t, user)))
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %s %s", resp.Status, body)
	}
	op, p, err := rc.readFrame(wait)
	if err != nil || op != opText || !strings.Contains(string(p), `"welcome"`) {
		t.Fatalf("first frame: op %d %q %v, want the welcome", op, p, err)
	}
	return rc
}

const (
	opCont  = 0x0
	opText  = 0x1
	opBin   = 0x2
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

// writeFrame writes one frame; rsv sets the reserved bits (0x70 mask).
func (rc *rawConn) writeFrame(fin bool, rsv, op byte, payload []byte, masked bool) {
	rc.t.Helper()
	var b []byte
	b0 := op | rsv
	if fin {
		b0 |= 0x80
	}
	b = append(b, b0)
	var mbit byte
	if masked {
		mbit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b = append(b, mbit|byte(n))
	case n < 1<<16:
		b = append(b, mbit|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, mbit|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	p := slices.Clone(payload)
	if masked {
		key := [4]byte{0x12, 0x34, 0x56, 0x78}
		b = append(b, key[:]...)
		for i := range p {
			p[i] ^= key[i%4]
		}
	}
	b = append(b, p...)
	if _, err := rc.nc.Write(b); err != nil {
		rc.t.Fatalf("write frame: %v", err)
	}
}

// readFrame reads one frame from the server within d.
func (rc *rawConn) readFrame(d time.Duration) (op byte, payload []byte, err error) {
	_ = rc.nc.SetReadDeadline(time.Now().Add(d))
	defer rc.nc.SetReadDeadline(time.Time{})
	var h [2]byte
	if _, err := io.ReadFull(rc.br, h[:]); err != nil {
		return 0, nil, err
	}
	op = h[0] & 0x0F
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(rc.br, l[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(rc.br, l[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(l[:])
	}
	if h[1]&0x80 != 0 {
		return op, nil, errors.New("the server masked a frame")
	}
	if n > 64<<20 {
		return op, nil, fmt.Errorf("frame of %d bytes", n)
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(rc.br, payload)
	return op, payload, err
}

// readClose reads frames until a close frame and returns its code; 1006
// when the connection ends without one.
func (rc *rawConn) readClose(d time.Duration) ws.StatusCode {
	deadline := time.Now().Add(d)
	for {
		op, p, err := rc.readFrame(time.Until(deadline))
		if err != nil {
			return ws.StatusAbnormalClosure
		}
		if op == opClose {
			if len(p) < 2 {
				return ws.StatusNoStatusReceived
			}
			return ws.StatusCode(binary.BigEndian.Uint16(p))
		}
	}
}

// closePayload is a close frame's payload with code.
func closePayload(code ws.StatusCode) []byte {
	return binary.BigEndian.AppendUint16(nil, uint16(code))
}
