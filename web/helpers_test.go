package web_test

// Helpers of the browser tests: one headless Chromium for the package,
// an isolated browser context (its own storage, like an incognito window)
// per simulated user, and a real chatd node on a loopback port that can be
// killed and started again on the same address.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/rs/zerolog"

	"github.com/chatd/chatd/internal/auth"
	"github.com/chatd/chatd/internal/hub"
	"github.com/chatd/chatd/internal/server"
	"github.com/chatd/chatd/web"
)

// Waits are generous: the tests share two cores with everything else, and
// a reconnect waits out a backoff with jitter.
const (
	waitShort = 20 * time.Second // something that follows an action at once
	waitLong  = 60 * time.Second // a reconnection after a drop
)

// testSecret signs the tokens of the tests that do not run in dev mode.
var testSecret = []byte("chatd-web-test-secret-0123456789abcdef")

// The browser, started by the first test that needs it and stopped by
// TestMain.
var browser struct {
	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	dir    string
	err    error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if browser.cancel != nil {
		browser.cancel() // stops the Chromium process chromedp started
	}
	if browser.dir != "" {
		_ = os.RemoveAll(browser.dir)
	}
	os.Exit(code)
}

// chromiumPath finds the browser: $CHATD_CHROMIUM, else the Debian
// package's /usr/bin/chromium, else chromium or google-chrome on PATH.
func chromiumPath() (string, error) {
	if p := os.Getenv("CHATD_CHROMIUM"); p != "" {
		return exec.LookPath(p)
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no chromium, chromium-browser or google-chrome found (set CHATD_CHROMIUM)")
}

// needBrowser returns the context of the shared browser, starting it the
// first time. Without a browser the test is skipped, except under CI=true,
// where it fails: CI must run every browser test.
func needBrowser(t *testing.T) context.Context {
	t.Helper()
	path, err := chromiumPath()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("browser test under CI=true, but %v", err)
		}
		t.Skipf("skipping the browser test: %v (apt-get install chromium)", err)
	}
	browser.once.Do(func() {
		browser.dir, browser.err = os.MkdirTemp("", "chatd-chromium-")
		if browser.err != nil {
			return
		}
		opts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(path),
			chromedp.UserDataDir(browser.dir),
			chromedp.NoSandbox,
			chromedp.DisableGPU,
			chromedp.NoFirstRun,
			chromedp.Flag("disable-quic", true),
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			chromedp.WindowSize(1280, 800),
		)
		allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, cancelCtx := chromedp.NewContext(allocCtx)
		browser.ctx = ctx
		browser.cancel = func() { cancelCtx(); cancelAlloc() }
		// The first Do starts the process; its lifetime is ctx's.
		started := make(chan error, 1)
		go func() { started <- chromedp.Do(ctx) }()
		select {
		case browser.err = <-started:
		case <-time.After(waitLong):
			browser.err = errors.New("chromium did not start within a minute")
		}
	})
	if browser.err != nil {
		t.Fatalf("starting %s: %v", path, browser.err)
	}
	return browser.ctx
}

// Pages.

// pageInit runs in every document before the page's own scripts: it
// records Content-Security-Policy violations, and defines the queries the
// tests make of the DOM.
const pageInit = `
window.__test = {
  violations: [],
  // The messages of the room shown, as the user sees them.
  messages() {
    return [...document.querySelectorAll("#messages ol.message-list > li.msg")].map((li) => ({
      id: li.dataset.id || "",
      cid: li.dataset.cid || "",
      from: li.querySelector(".from")?.textContent ?? "",
      text: li.querySelector(".text")?.textContent ?? "",
      own: li.classList.contains("own"),
      unsent: li.classList.contains("unsent"),
      state: li.dataset.state || "",
    }));
  },
  members() {
    return [...document.querySelectorAll("#member-list > li.member")].map((li) => li.dataset.user);
  },
  status() {
    return document.getElementById("status").dataset.state;
  },
  alert() {
    const a = document.getElementById("alert");
    return a.classList.contains("shown") ? document.getElementById("alert-text").textContent : "";
  },
  statusLog: [],
  visible(id) {
    const el = document.getElementById(id);
    if (!el) return false;
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && getComputedStyle(el).visibility !== "hidden";
  },
};
document.addEventListener("securitypolicyviolation", (e) => {
  window.__test.violations.push(e.violatedDirective + " " + (e.blockedURI || ""));
});
// Every text the status line shows, in order, however briefly.
document.addEventListener("DOMContentLoaded", () => {
  const el = document.getElementById("status-text");
  if (!el) return;
  window.__test.statusLog.push(el.textContent);
  new MutationObserver(() => window.__test.statusLog.push(el.textContent)).observe(el, { childList: true, characterData: true, subtree: true });
});
`

// page is one user's browser tab, in a browser context of its own.
type page struct {
	t    *testing.T
	name string
	ctx  context.Context

	mu       sync.Mutex
	over     bool     // the test has ended: log nothing more
	problems []string // uncaught exceptions and policy violations
	logged   []string // every console message, with its URL
	shot     int
}

// viewport is a page's size; mobile adds touch and the mobile meta
// viewport handling.
type viewport struct {
	width, height int64
	mobile        bool
}

var (
	desktop = viewport{width: 1280, height: 800}
	phone   = viewport{width: 390, height: 844, mobile: true}
)

// openPage opens a tab for user name at url. The test fails at its end if
// the page threw an exception or violated its Content-Security-Policy.
func openPage(t *testing.T, name, url string, vp viewport) *page {
	t.Helper()
	bctx := needBrowser(t)
	ctx, cancel := chromedp.NewContext(bctx, chromedp.WithNewBrowserContext())
	p := &page{t: t, name: name, ctx: ctx}
	t.Cleanup(func() {
		if !t.Failed() {
			p.checkClean()
		}
		p.mu.Lock()
		p.over = true
		p.mu.Unlock()
		cancel()
	})
	if err := chromedp.Do(ctx); err != nil { // opens the tab
		t.Fatalf("%s: open a tab: %v", name, err)
	}
	console := chromedp.Console(ctx)
	go func() { // ends with ctx
		for m, err := range console {
			if err != nil {
				return
			}
			p.console(m)
		}
	}()
	opts := []chromedp.EmulateViewportOption{chromedp.EmulatePortrait}
	if vp.mobile {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulateScale(2))
	}
	err := chromedp.Do(ctx,
		chromedp.EmulateViewport(vp.width, vp.height, opts...),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Call(ctx, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: pageInit})
			return err
		}),
		chromedp.Navigate(url),
	)
	if err != nil {
		t.Fatalf("%s: load %s: %v", name, url, err)
	}
	return p
}

func (p *page) console(m chromedp.ConsoleMessage) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.over {
		return
	}
	text := m.String()
	p.logged = append(p.logged, text+" "+m.URL)
	if m.IsException() || strings.Contains(text, "Content Security Policy") || strings.Contains(text, "Trusted Type") {
		p.problems = append(p.problems, text)
	}
	p.t.Logf("%s console: %s", p.name, text)
}

// consoleLines returns every console message so far, each with its URL.
func (p *page) consoleLines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.logged)
}

// checkClean fails the test if the page threw or was refused something by
// its own Content-Security-Policy.
func (p *page) checkClean() {
	p.t.Helper()
	violations, err := chromedp.Run(p.ctx, chromedp.Evaluate[[]string](`window.__test.violations`))
	if err != nil {
		p.t.Errorf("%s: read CSP violations: %v", p.name, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, v := range p.problems {
		p.t.Errorf("%s: the page reported: %s", p.name, v)
	}
	for _, v := range violations {
		p.t.Errorf("%s: Content-Security-Policy violation: %s", p.name, v)
	}
}

// do runs actions, failing the test on error.
func (p *page) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, actions...); err != nil {
		p.fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		p.fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor waits until the JavaScript expression cond is true in the page;
// the page itself polls, so a wait is one round trip.
func (p *page) waitFor(what, cond string, timeout time.Duration) {
	p.t.Helper()
	_, err := chromedp.Run(p.ctx, chromedp.Poll[chromedp.Void](cond,
		chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		p.fatalf("waiting %v for %s (%s): %v", timeout, what, cond, err)
	}
}

// fatalf saves a screenshot and what the page shows, then fails the test.
func (p *page) fatalf(format string, args ...any) {
	p.t.Helper()
	msg := fmt.Sprintf(format, args...)
	state, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](`JSON.stringify({status: document.getElementById("status")?.innerText,
		alert: window.__test?.alert(), signin: document.getElementById("signin-error")?.textContent,
		room: document.getElementById("room-title")?.textContent, members: window.__test?.members(),
		messages: window.__test?.messages()})`))
	p.screenshot("failure")
	p.t.Fatalf("%s: %s\npage state: %s", p.name, msg, state)
}

// screenshot saves the viewport as a PNG in the test's directory and
// returns its path.
func (p *page) screenshot(label string) string {
	p.t.Helper()
	buf, err := chromedp.Run(p.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Logf("%s: screenshot %s: %v", p.name, label, err)
		return ""
	}
	p.mu.Lock()
	p.shot++
	n := p.shot
	p.mu.Unlock()
	path := filepath.Join(screenshotDir(p.t), fmt.Sprintf("%s-%02d-%s.png", p.name, n, label))
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		p.t.Errorf("save screenshot: %v", err)
		return ""
	}
	p.t.Logf("screenshot: %s", path)
	return path
}

var screenshotDirs sync.Map // *testing.T -> string

// screenshotDir is one t.TempDir per test, so a test's screenshots sit
// together; with $CHATD_SCREENSHOT_DIR set they are kept there instead,
// in a directory named after the test.
func screenshotDir(t *testing.T) string {
	if d, ok := screenshotDirs.Load(t); ok {
		return d.(string)
	}
	d := t.TempDir()
	if keep := os.Getenv("CHATD_SCREENSHOT_DIR"); keep != "" {
		d = filepath.Join(keep, strings.ReplaceAll(t.Name(), "/", "_"))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	screenshotDirs.Store(t, d)
	t.Cleanup(func() { screenshotDirs.Delete(t) })
	return d
}

// typeKeys types text into whatever has the focus, as a keyboard does
// ("\r" is Enter, "\t" is Tab, "\x1b" is Escape).
func (p *page) typeKeys(text string, mods ...chromedp.Modifier) {
	p.t.Helper()
	p.do("type "+text, keys(text, mods...))
}

// keys types like a keyboard: each key is a keyDown carrying its text and
// a keyUp, so the character is inserted (and Enter submits a form) only
// when the page did not cancel the keydown. chromedp.KeyEvent sends a
// separate char event, which a keydown handler cannot cancel.
func keys(text string, mods ...chromedp.Modifier) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for _, r := range text {
			ev := kb.Encode(r)
			down, up := *ev[0], *ev[len(ev)-1]
			if len(ev) == 3 {
				down.Text, down.UnmodifiedText = ev[1].Text, ev[1].UnmodifiedText
			}
			for _, m := range mods {
				down.Modifiers |= int64(m)
				up.Modifiers |= int64(m)
			}
			for _, k := range []input.DispatchKeyEventParams{down, up} {
				if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, k); err != nil {
					return fmt.Errorf("key %q: %w", r, err)
				}
			}
		}
		return nil
	})
}

// focused returns the id of the element with the focus.
func (p *page) focused() string {
	p.t.Helper()
	return eval[string](p, `document.activeElement?.id ?? ""`)
}

// domMessage is a message as the page shows it (window.__test.messages).
type domMessage struct {
	ID     string `json:"id"`
	CID    string `json:"cid"`
	From   string `json:"from"`
	Text   string `json:"text"`
	Own    bool   `json:"own"`
	Unsent bool   `json:"unsent"`
	State  string `json:"state"`
}

func (p *page) messages() []domMessage {
	p.t.Helper()
	return eval[[]domMessage](p, `window.__test.messages()`)
}

// metric reads the node's /metrics: the first sample of name whose
// labels contain label, 0 when there is none.
func (n *node) metric(name, label string) float64 {
	n.t.Helper()
	res, err := http.Get("http://" + n.addr + "/metrics")
	if err != nil {
		n.t.Fatalf("metrics: %v", err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if (strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{")) && strings.Contains(line, label) {
			var v float64
			if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
				return v
			}
		}
	}
	return 0
}

// A chatd node.

// node is a chatd server running in the test, wired as cmd/chatd wires
// it. The broker outlives restarts, as Redis outlives a node.
type node struct {
	t      *testing.T
	cfg    server.Config
	broker *hub.MemoryBroker
	signer *auth.Signer // nil in dev mode
	gate   *gate
	addr   string

	srv    *server.Server
	ln     *trackingListener
	cancel context.CancelFunc
	served chan error
}

// startNode starts chatd on 127.0.0.1 with cfg. Without cfg.Auth.Secret
// it is in dev mode, like a bare `chatd`.
func startNode(t *testing.T, cfg server.Config) *node {
	t.Helper()
	if cfg.NodeID == "" {
		cfg.NodeID = "web-test"
	}
	cfg.Compression = true // cmd/chatd's default
	n := &node{t: t, cfg: cfg, broker: hub.NewMemoryBroker(hub.RetentionConfig{}), gate: newGate()}
	if len(cfg.Auth.Secret) > 0 {
		s, err := auth.NewSigner(cfg.Auth)
		if err != nil {
			t.Fatal(err)
		}
		n.signer = s
	}
	n.start("127.0.0.1:0")
	t.Cleanup(n.stop)
	return n
}

// URL is the page's address.
func (n *node) URL() string { return "http://" + n.addr + "/" }

func (n *node) start(addr string) {
	n.t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(n.t)).Level(zerolog.WarnLevel).With().Timestamp().Logger()
	srv, err := server.New(n.cfg, server.Deps{Broker: n.broker, Logger: log, Web: web.Handler()})
	if err != nil {
		n.t.Fatalf("server.New: %v", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		n.t.Fatalf("listen on %s: %v", addr, err)
	}
	n.srv = srv
	n.ln = &trackingListener{Listener: ln, gate: n.gate, conns: map[net.Conn]struct{}{}}
	n.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.served = make(chan error, 1)
	go func() { n.served <- srv.Serve(ctx, n.ln, "", "") }()
}

// kill stops the node as a crash would: the listener and every connection
// are closed with no goodbye. It returns once the node's sessions are gone,
// so the broker holds no presence of theirs.
func (n *node) kill() {
	n.t.Helper()
	n.ln.Close()
	n.ln.closeConns()
	select {
	case <-n.served:
	case <-time.After(waitShort):
		n.t.Fatal("Serve did not return after its listener was closed")
	}
	n.cancel()
	n.waitIdle()
}

// drain stops the node as SIGTERM does: `draining`, then close 1001.
func (n *node) drain() {
	n.t.Helper()
	n.cancel()
	select {
	case err := <-n.served:
		if err != nil {
			n.t.Errorf("Serve after drain: %v", err)
		}
	case <-time.After(waitLong):
		n.t.Fatal("Serve did not return after a drain")
	}
	n.ln.closeConns()
	n.waitIdle()
}

func (n *node) waitIdle() {
	n.t.Helper()
	deadline := time.Now().Add(waitShort)
	for n.srv.Connections() > 0 {
		if time.Now().After(deadline) {
			n.t.Fatalf("%d sessions still open after the node stopped", n.srv.Connections())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// restart kills the node and starts a new one on the same address.
func (n *node) restart() {
	n.t.Helper()
	n.kill()
	n.start(n.addr)
}

func (n *node) stop() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	select {
	case <-n.served:
	case <-time.After(waitLong):
		n.t.Error("Serve did not return at the end of the test")
	}
	n.ln.closeConns()
	deadline := time.Now().Add(waitShort)
	for n.srv.Connections() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// token signs a token (not in dev mode).
func (n *node) token(spec auth.TokenSpec) string {
	n.t.Helper()
	if n.signer == nil {
		n.t.Fatal("token: the node is in dev mode")
	}
	tok, err := n.signer.Sign(spec)
	if err != nil {
		n.t.Fatal(err)
	}
	return tok
}

// publish posts a message through the server's HTTP API, as a backend
// would, and returns its id.
func (n *node) publish(room, from, text string) string {
	n.t.Helper()
	admin := n.token(auth.TokenSpec{Subject: from, Name: from, Admin: true})
	body, _ := json.Marshal(map[string]string{"text": text})
	req, _ := http.NewRequest(http.MethodPost, "http://"+n.addr+"/api/rooms/"+room+"/messages", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+admin)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatalf("publish: %v", err)
	}
	defer res.Body.Close()
	var out struct {
		ID string `json:"id"`
	}
	if res.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(res.Body)
		n.t.Fatalf("publish: %s: %s", res.Status, b)
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		n.t.Fatalf("publish: %v", err)
	}
	return out.ID
}

// trackingListener remembers every connection it accepted, so kill can
// close them, and passes them through the gate.
type trackingListener struct {
	net.Listener
	gate *gate

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if l.gate.active() {
		c = &gatedConn{Conn: c, gate: l.gate}
	}
	l.mu.Lock()
	l.conns[c] = struct{}{}
	l.mu.Unlock()
	return c, nil
}

func (l *trackingListener) closeConns() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		_ = c.Close()
	}
	clear(l.conns)
}

// gate keeps chosen users out: a connection whose upgrade request carries
// the access_token of a blocked user is dropped before the server sees
// it, as if that user's network were down. The rest pass untouched.
type gate struct {
	mu      sync.Mutex
	blocked map[string]bool
	refused map[string]int
}

func newGate() *gate { return &gate{blocked: map[string]bool{}, refused: map[string]int{}} }

func (g *gate) block(user string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.blocked[user] = true
}

func (g *gate) unblock(user string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.blocked, user)
}

func (g *gate) active() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.blocked) > 0
}

// refuse reports whether user is kept out, counting the refusal.
func (g *gate) refuse(user string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.blocked[user] {
		return false
	}
	g.refused[user]++
	return true
}

func (g *gate) refusals(user string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.refused[user]
}

// gatedConn reads the request bytes looking for an access_token
// subprotocol, and drops the connection when its user is blocked.
type gatedConn struct {
	net.Conn
	gate *gate
	seen []byte // request bytes not yet matched, at most a few KiB
}

func (c *gatedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.seen = append(c.seen, p[:n]...)
		if sub, ok := tokenSubject(c.seen); ok {
			c.seen = c.seen[:0]
			if c.gate.refuse(sub) {
				_ = c.Conn.Close()
				return 0, io.EOF
			}
		} else if len(c.seen) > 16<<10 {
			c.seen = append(c.seen[:0], c.seen[len(c.seen)-4<<10:]...)
		}
	}
	return n, err
}

// tokenSubject finds "access_token.<jwt>" in b and returns the token's
// sub; ok is false until a whole token is there.
func tokenSubject(b []byte) (string, bool) {
	const marker = "access_token."
	i := bytes.Index(b, []byte(marker))
	if i < 0 {
		return "", false
	}
	rest := b[i+len(marker):]
	end := bytes.IndexFunc(rest, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	})
	if end < 0 {
		return "", false
	}
	parts := strings.Split(string(rest[:end]), ".")
	if len(parts) != 3 {
		return "", true
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", true
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	_ = json.Unmarshal(payload, &claims)
	return claims.Sub, true
}

// jsonString is v as a JavaScript literal.
func jsonString(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}
