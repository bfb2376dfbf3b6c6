package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/auth"
	"github.com/chatd/chatd/internal/hub"
)

// get sends a GET to path on ts.
func (ts *testServer) get(t *testing.T, path string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, ts.HTTP+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return httpDo(t, req)
}

// post sends body to path on ts with the token as a bearer token (none
// when empty).
func (ts *testServer) post(t *testing.T, path, token, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, ts.HTTP+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return httpDo(t, req)
}

func decodeJSON(t *testing.T, body []byte) msg {
	t.Helper()
	var m msg
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", body, err)
	}
	return m
}

// TestHealthz: alive whatever the broker says.
func TestHealthz(t *testing.T) {
	t.Parallel()
	unready := &atomic.Bool{}
	unready.Store(true)
	ts := startServer(t, fastConfig(), serverOpts{broker: func(b hub.Broker) hub.Broker { return failingBroker{Broker: b, unready: unready} }})
	resp, body := ts.get(t, "/healthz")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %d %s", resp.StatusCode, body)
	}
	if m := decodeJSON(t, body); m.str("status") != "ok" || m.str("node") != "test" {
		t.Errorf("/healthz body %s", body)
	}
}

// TestReadyz: ready when the broker answers and the node is not draining;
// 503 with the JSON error body otherwise.
func TestReadyz(t *testing.T) {
	t.Parallel()
	unready := &atomic.Bool{}
	ts := startServer(t, fastConfig(), serverOpts{broker: func(b hub.Broker) hub.Broker { return failingBroker{Broker: b, unready: unready} }})
	resp, body := ts.get(t, "/readyz")
	if resp.StatusCode != http.StatusOK || decodeJSON(t, body).str("status") != "ready" {
		t.Fatalf("/readyz: %d %s, want 200 ready", resp.StatusCode, body)
	}
	unready.Store(true)
	resp, body = ts.get(t, "/readyz")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with the broker down: %d %s, want 503", resp.StatusCode, body)
	}
	checkErrorBody(t, resp, body, "not_ready")
	if m := decodeJSON(t, body); !strings.Contains(m.str("message"), "broker") {
		t.Errorf("/readyz message %q does not name the broker", m.str("message"))
	}
	unready.Store(false)
	if resp, body := ts.get(t, "/readyz"); resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz after the broker came back: %d %s", resp.StatusCode, body)
	}
}

// TestMetrics: /metrics is Prometheus text with the node label and the
// metrics of the issue.
func TestMetrics(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	cfg.NodeID = "metrics-node"
	cfg.SendRate, cfg.SendBurst = 0.01, 1
	ts := startServer(t, cfg)
	a := ts.dial(t, "alice")
	b := ts.dial(t, "bob")
	a.join("m")
	b.join("m")
	a.post("m", "one")
	if m := a.roundTrip(map[string]any{"type": "send", "room": "m", "text": "two"}); m.str("code") != "rate_limited" {
		t.Fatalf("second send: %v", m)
	}
	_, err := ts.tryDial(dialOpts{header: http.Header{"Authorization": {"Bearer bad.token.here"}}})
	if dialStatus(err) != http.StatusUnauthorized {
		t.Fatalf("bad token: %v", err)
	}
	resp, body := ts.get(t, "/metrics")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	text := string(body)
	for _, want := range []string{
		`chatd_connections{node="metrics-node"} 2`,
		`chatd_connections_total{node="metrics-node"} 2`,
		`chatd_joins_total{node="metrics-node"} 2`,
		`chatd_messages_in_total{node="metrics-node"} 1`,
		`chatd_deliveries_total{node="metrics-node"} 2`,
		`chatd_rooms{node="metrics-node"} 1`,
		`chatd_commands_total{node="metrics-node",type="send"} 2`,
		`chatd_rate_limited_total{node="metrics-node",scope="connection"} 1`,
		`chatd_auth_failures_total{node="metrics-node",reason="malformed"} 1`,
		`chatd_handshake_rejections_total{node="metrics-node",reason="token_malformed"} 1`,
		`chatd_broker_duration_seconds_count{node="metrics-node",op="publish"} 1`,
		`chatd_queue_drops_total{node="metrics-node"} 0`,
		`chatd_slow_consumers_total{node="metrics-node"} 0`,
		`chatd_build_info{go_version="` + runtime.Version() + `",node="metrics-node",version="unknown"} 1`,
		"go_goroutines",
		"process_open_fds",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestNotFound: unknown paths and methods are JSON errors, and API paths
// never reach the web client.
func TestNotFound(t *testing.T) {
	t.Parallel()
	web := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("web client")) })
	ts := startServer(t, fastConfig(), serverOpts{web: web})
	resp, body := ts.get(t, "/")
	if resp.StatusCode != http.StatusOK || string(body) != "web client" {
		t.Errorf("/: %d %q, want the web client", resp.StatusCode, body)
	}
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodPost, "/api/dev/token", 404}, // not in dev mode
		{http.MethodGet, "/api/nothing", 404},
		{http.MethodGet, "/api/rooms/lobby/messages", 405},
		{http.MethodPost, "/healthz", 405},
	} {
		req, _ := http.NewRequest(tc.method, ts.HTTP+tc.path, strings.NewReader(`{"name":"x"}`))
		resp, body := httpDo(t, req)
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, resp.StatusCode, body, tc.status)
			continue
		}
		checkErrorBody(t, resp, body, "")
	}
	plain := startServer(t, fastConfig())
	resp, body = plain.get(t, "/nothing")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("/nothing without a web client: %d", resp.StatusCode)
	}
	checkErrorBody(t, resp, body, "not_found")
}

// TestDevToken: without a key, POST /api/dev/token hands out tokens the
// server accepts; with a key the endpoint does not exist (TestNotFound).
func TestDevToken(t *testing.T) {
	t.Parallel()
	ts := startServer(t, fastConfig(), serverOpts{devMode: true})
	if !ts.Server.DevMode() {
		t.Fatal("DevMode() is false without a key")
	}
	before := time.Now().Unix()
	resp, body := ts.post(t, "/api/dev/token", "", `{"name":"Zoë"}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("dev token: %d %s", resp.StatusCode, body)
	}
	m := decodeJSON(t, body)
	if m.str("user") != "Zoë" || m.str("name") != "Zoë" || m.str("token") == "" || m.num("exp") < before+3500 {
		t.Errorf("dev token reply %s", body)
	}
	c := ts.dialWith(t, "zoe", dialOpts{subprotocols: []string{"chat", "access_token." + m.str("token")}})
	if w := c.expect("welcome"); w.str("user") != "Zoë" || w.str("name") != "Zoë" {
		t.Errorf("welcome %v", w)
	}
	for _, bad := range []string{``, `{}`, `{"name":""}`, `{"name":"   "}`, `{"name":` + strconv.Quote(strings.Repeat("x", 65)) + `}`, `[1]`, `{"name":5}`} {
		resp, body := ts.post(t, "/api/dev/token", "", bad)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("dev token with %q: %d %s, want 400", bad, resp.StatusCode, body)
			continue
		}
		checkErrorBody(t, resp, body, "bad_request")
	}
	keyed := startServer(t, fastConfig())
	if keyed.Server.DevMode() || keyed.Server.DevTokens() {
		t.Error("DevMode() or DevTokens() is true with a key")
	}
	// GET says whether POST signs, always with a 200 (a page asks it
	// before showing the sign-in, and a failed request would be logged
	// in the browser's console).
	for _, tc := range []struct {
		ts   *testServer
		want string
	}{{ts, `{"dev":true}`}, {keyed, `{"dev":false}`}} {
		resp, body := tc.ts.get(t, "/api/dev/token")
		if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != tc.want || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("GET /api/dev/token: %d %s %q, want 200 %s", resp.StatusCode, resp.Header.Get("Content-Type"), body, tc.want)
		}
	}
}

// TestDevTokensWithSecret: with a configured secret and DevTokens, POST
// /api/dev/token signs with that secret, so that another node sharing it
// (without DevTokens) accepts the token: a cluster's page signs in by name
// on whichever node the balancer picks.
func TestDevTokensWithSecret(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	cfg.DevTokens = true
	signing := startServer(t, cfg)
	if signing.Server.DevMode() || !signing.Server.DevTokens() {
		t.Fatalf("DevMode() = %v, DevTokens() = %v with a secret and DevTokens; want false, true", signing.Server.DevMode(), signing.Server.DevTokens())
	}
	resp, body := signing.get(t, "/api/dev/token")
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != `{"dev":true}` {
		t.Errorf("GET /api/dev/token: %d %s", resp.StatusCode, body)
	}
	resp, body = signing.post(t, "/api/dev/token", "", `{"name":"Ann"}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("dev token: %d %s", resp.StatusCode, body)
	}
	tok := decodeJSON(t, body).str("token")
	other := startServer(t, fastConfig()) // same secret, no dev tokens
	for _, ts := range []*testServer{signing, other} {
		c := ts.dialWith(t, "ann", dialOpts{subprotocols: []string{"chat", "access_token." + tok}})
		if w := c.expect("welcome"); w.str("user") != "Ann" {
			t.Errorf("welcome %v", w)
		}
	}
	// A token made by a server with another secret is refused.
	devMode := startServer(t, fastConfig(), serverOpts{devMode: true})
	_, body = devMode.post(t, "/api/dev/token", "", `{"name":"Ann"}`)
	if _, err := signing.tryDial(dialOpts{subprotocols: []string{"chat", "access_token." + decodeJSON(t, body).str("token")}}); dialStatus(err) != http.StatusUnauthorized {
		t.Errorf("a token of another secret: %v, want 401", err)
	}
}

// TestDevTokenRateLimit: POST /api/dev/token is limited per client
// address like upgrades are (with a limiter of its own): beyond the
// burst, 429 with Retry-After; upgrades are not charged for tokens.
func TestDevTokenRateLimit(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	cfg.UpgradeRate, cfg.UpgradeBurst = 0.01, 3 // one more every 100 s
	ts := startServer(t, cfg, serverOpts{devMode: true})
	var token string
	for i := range 3 {
		resp, body := ts.post(t, "/api/dev/token", "", `{"name":"Ann"}`)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("token %d of a burst of 3: %d %s", i+1, resp.StatusCode, body)
		}
		token = decodeJSON(t, body).str("token")
	}
	resp, body := ts.post(t, "/api/dev/token", "", `{"name":"Ann"}`)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("token beyond the burst: %d %s, want 429", resp.StatusCode, body)
	}
	checkErrorBody(t, resp, body, "rate_limited")
	if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 90 || ra > 100 {
		t.Errorf("Retry-After %q, want about 100 s", resp.Header.Get("Retry-After"))
	}
	// The upgrade limit has its own budget: the three tokens cost none.
	for range 3 {
		c := ts.dialWith(t, "ann", dialOpts{subprotocols: []string{"chat", "access_token." + token}})
		c.expect("welcome")
	}
	if got := ts.metric(t, `chatd_rate_limited_total{node="test",scope="dev_token"}`); got != 1 {
		t.Errorf("dev_token denials metric %v, want 1", got)
	}
	// Asking whether dev sign-in exists is not limited.
	if resp, body := ts.get(t, "/api/dev/token"); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /api/dev/token after the limit: %d %s", resp.StatusCode, body)
	}
}

// TestPublishAPI: POST /api/rooms/{room}/messages with a chat:admin token
// posts to the room like a send, with the same cid de-duplication.
func TestPublishAPI(t *testing.T) {
	t.Parallel()
	ts := startServer(t, fastConfig(), serverOpts{broker: func(b hub.Broker) hub.Broker { return failingBroker{Broker: b} }})
	admin := ts.sign(t, auth.TokenSpec{Subject: "backend", Name: "Backend", Admin: true})
	member := ts.dial(t, "alice")
	member.join("lobby")
	member.sync()

	resp, body := ts.post(t, "/api/rooms/lobby/messages", admin, `{"text":"hello from the backend","cid":"b-1"}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("publish: %d %s, want 201", resp.StatusCode, body)
	}
	first := decodeJSON(t, body)
	if first.str("room") != "lobby" || !idPattern.MatchString(first.str("id")) || first.num("ts") == 0 || first["duplicate"] != false {
		t.Errorf("publish reply %s", body)
	}
	m := member.waitFor("message", nil)
	if m.str("id") != first.str("id") || m.str("from") != "backend" || m.str("name") != "Backend" || m.str("text") != "hello from the backend" || m.str("cid") != "b-1" {
		t.Errorf("member got %v", m)
	}
	// The same cid again: 200, the original, not delivered again.
	resp, body = ts.post(t, "/api/rooms/lobby/messages", admin, `{"text":"hello from the backend","cid":"b-1"}`)
	if again := decodeJSON(t, body); resp.StatusCode != http.StatusOK || again.str("id") != first.str("id") || again["duplicate"] != true {
		t.Errorf("repeated publish: %d %s, want 200 with the original id and duplicate true", resp.StatusCode, body)
	}
	// from and name can be given.
	resp, body = ts.post(t, "/api/rooms/lobby/messages", admin, `{"text":"hi","from":"system","name":"System"}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("publish as system: %d %s", resp.StatusCode, body)
	}
	if m := member.waitFor("message", nil); m.str("from") != "system" || m.str("name") != "System" || m.has("cid") {
		t.Errorf("member got %v, want the message from system (and nothing twice)", m)
	}
	if extra := member.sync(); len(extra) != 0 {
		t.Errorf("member got %v", extra)
	}

	user := ts.token(t, "alice")
	tests := []struct {
		name, path, token, body string
		status                  int
		code                    string
	}{
		{"no token", "/api/rooms/lobby/messages", "", `{"text":"x"}`, 401, "unauthorized"},
		{"bad token", "/api/rooms/lobby/messages", "x.y.z", `{"text":"x"}`, 401, "unauthorized"},
		{"not admin", "/api/rooms/lobby/messages", user, `{"text":"x"}`, 403, "forbidden"},
		{"bad room", "/api/rooms/a%20b/messages", admin, `{"text":"x"}`, 400, "bad_request"},
		{"room too long", "/api/rooms/" + strings.Repeat("r", 65) + "/messages", admin, `{"text":"x"}`, 400, "bad_request"},
		{"not JSON", "/api/rooms/lobby/messages", admin, `text=x`, 400, "bad_request"},
		{"no text", "/api/rooms/lobby/messages", admin, `{"cid":"x"}`, 400, "bad_request"},
		{"text not a string", "/api/rooms/lobby/messages", admin, `{"text":5}`, 400, "bad_request"},
		{"text too long", "/api/rooms/lobby/messages", admin, `{"text":"` + strings.Repeat("x", 4097) + `"}`, 413, "too_large"},
		{"cid too long", "/api/rooms/lobby/messages", admin, `{"text":"x","cid":"` + strings.Repeat("c", 65) + `"}`, 400, "bad_request"},
		{"broker down", "/api/rooms/down-1/messages", admin, `{"text":"x"}`, 503, "unavailable"},
		{"broker broken", "/api/rooms/broken-1/messages", admin, `{"text":"x"}`, 500, "internal"},
	}
	for _, tc := range tests {
		resp, body := ts.post(t, tc.path, tc.token, tc.body)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, resp.StatusCode, body, tc.status)
			continue
		}
		checkErrorBody(t, resp, body, tc.code)
		if tc.status == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q", tc.name, resp.Header.Get("WWW-Authenticate"))
		}
		if tc.status == 503 && resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", tc.name)
		}
	}
	if extra := member.sync(); len(extra) != 0 {
		t.Errorf("refused publishes reached the room: %v", extra)
	}
}

// TestDrainRefusesNewConnections: once draining, /readyz says so and an
// upgrade is answered 503 with Retry-After, while the listener is still
// open (a load balancer may not have noticed yet).
func TestDrainRefusesNewConnections(t *testing.T) {
	t.Parallel()
	cfg := fastConfig()
	cfg.DrainWindow = 100 * time.Millisecond
	ts := startServer(t, cfg)
	c := ts.dial(t, "alice")
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		ts.Server.Drain(ctx)
	}()
	c.expect("draining")
	resp, body := ts.get(t, "/readyz")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "draining") {
		t.Errorf("/readyz while draining: %d %s", resp.StatusCode, body)
	}
	resp, body = httpDo(t, upgradeRequest(t, ts, ts.token(t, "bob")))
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("upgrade while draining: %d %s, want 503", resp.StatusCode, body)
	}
	checkErrorBody(t, resp, body, "unavailable")
	if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || n < 1 {
		t.Errorf("Retry-After %q", resp.Header.Get("Retry-After"))
	}
	c.expectClose(1001)
	<-drained
	if n := ts.Server.Connections(); n != 0 {
		t.Errorf("%d connections after the drain", n)
	}
}
