package web_test

// Browser tests of what the server refuses, and of tokens: errors shown
// where the user looks, the close codes 1008, 1001 and 4001, and the
// refresh of a token before it expires.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/chatd/chatd/internal/auth"
	"github.com/chatd/chatd/internal/server"
)

// signInWithToken opens the page with #token=<jwt>, as a link from an
// operator would, and waits for the connection.
func signInWithToken(t *testing.T, n *node, name, token string, vp viewport) *page {
	t.Helper()
	p := openPage(t, name, n.URL()+"#token="+token, vp)
	p.waitFor("a connection", `window.__test.status() === "connected"`, waitShort)
	if h := eval[string](p, `location.href`); strings.Contains(h, "token") {
		p.fatalf("the token stays in the address bar: %s", h)
	}
	return p
}

// send types a message into the message box and presses Enter.
func (p *page) send(text string) {
	p.t.Helper()
	p.do("focus the message box", chromedp.Focus(chromedp.ID("composer-input")))
	p.typeKeys(text + "\r")
}

// TestBrowserSignInChoice: the page offers the sign-in by name exactly
// when the server hands out dev tokens (dev mode, or a secret with dev
// tokens on, as a local cluster runs), and otherwise asks for a token;
// learning which makes no failed request (a browser logs those in its
// console, where they look like bugs).
func TestBrowserSignInChoice(t *testing.T) {
	tests := []struct {
		name string
		cfg  server.Config
		dev  bool
	}{
		{"dev mode", server.Config{}, true},
		{"dev tokens with a secret", server.Config{Auth: auth.Config{Secret: testSecret}, DevTokens: true}, true},
		{"a secret only", server.Config{Auth: auth.Config{Secret: testSecret}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := startNode(t, tc.cfg)
			p := openPage(t, "signin", n.URL(), desktop)
			if tc.dev {
				p.signInDev("Dana")
				if w := eval[string](p, `document.getElementById("me").textContent`); w != "Dana" {
					p.fatalf("signed in as %q, want Dana", w)
				}
			} else {
				p.waitFor("the token form alone", `window.__test.visible("token-form") && !window.__test.visible("dev-form") &&
					document.activeElement?.id === "token-input"`, waitShort)
			}
			p.screenshot("signin")
			for _, line := range p.consoleLines() {
				if strings.Contains(line, "Failed to load resource") || strings.Contains(line, "/api/dev/token") {
					p.fatalf("the console shows a failed request: %s", line)
				}
			}
		})
	}
}

// TestBrowserServerErrors: a forbidden room, a message over the server's
// limit and sending too fast are each said next to the message box, and
// the messages held back by the rate limit go out later, once each, in
// the order they were written.
func TestBrowserServerErrors(t *testing.T) {
	n := startNode(t, server.Config{Auth: auth.Config{Secret: testSecret}, SendRate: 1, SendBurst: 2, MaxText: 200})
	tok := n.token(auth.TokenSpec{Subject: "carol", Name: "Carol", Rooms: []string{"lobby", "team-*"}})
	p := signInWithToken(t, n, "carol", tok, desktop)

	// No rooms yet: the focus is in the room box.
	p.waitFor("the focus in the room box", `document.activeElement?.id === "room-input"`, waitShort)
	p.typeKeys("lobby\r")
	p.waitJoined("lobby")

	// A room the token does not allow.
	p.do("focus the room box", chromedp.Focus(chromedp.ID("room-input")))
	p.typeKeys("secret\r")
	p.waitFor("the forbidden alert", `window.__test.alert() === "You may not join #secret."`, waitShort)
	p.waitFor("#secret to leave the room list", `!document.querySelector('#room-list li[data-room="secret"]') &&
		document.getElementById("room-title").textContent === "#lobby"`, waitShort)
	p.screenshot("forbidden")
	p.typeKeys("\x1b") // Escape dismisses the alert
	p.waitFor("the alert to go", `window.__test.alert() === ""`, waitShort)

	// Over the server's limit (200 bytes here; the page checks 4096).
	p.do("write a long message", chromedp.SetValue(chromedp.ID("composer-input"), strings.Repeat("long ", 50)))
	p.send("")
	p.waitFor("the too-large alert", `window.__test.alert() === "That message is too long."`, waitShort)
	p.waitFor("the message marked not sent", `window.__test.messages().some((m) => m.state === "failed")`, waitShort)
	if eval[bool](p, `document.querySelector("#messages li.msg[data-state=failed] button.retry") !== null`) {
		p.fatalf("a message that is too long offers Retry")
	}
	p.screenshot("too-large")
	p.do("discard it", chromedp.Click(chromedp.CSS("#messages li.msg[data-state=failed] button.discard")))
	p.waitFor("the failed message to go", `window.__test.messages().length === 0`, waitShort)

	// Five messages at once: two pass (the burst), three wait for the
	// rate limit, and go out in order.
	var texts []string
	for i := 1; i <= 5; i++ {
		texts = append(texts, fmt.Sprintf("quick %d", i))
		p.typeKeys(texts[i-1] + "\r")
	}
	p.waitFor("the rate-limit alert", `window.__test.alert().startsWith("You are sending too fast")`, waitShort)
	p.screenshot("rate-limited")
	p.waitTexts("every message, in order", texts, waitShort)
	p.checkMessages(texts, []string{"Carol", "Carol", "Carol", "Carol", "Carol"}, "Carol")
	if denials := n.metric("chatd_rate_limited_total", `scope="connection"`); denials > 4 {
		t.Errorf("%v rate-limit denials for 3 held messages: the page should wait as it is told", denials)
	}
}

// TestBrowserPolicyClose: messages written while the network was down go
// out together when it is back; a server that allows one message and
// two refusals closes with 1008, and the page says why and waits.
func TestBrowserPolicyClose(t *testing.T) {
	n := startNode(t, server.Config{Auth: auth.Config{Secret: testSecret}, SendRate: 0.1, SendBurst: 1, AbuseStrikes: 2, AbuseWindow: time.Minute})
	p := signInWithToken(t, n, "dave", n.token(auth.TokenSpec{Subject: "dave", Name: "Dave"}), desktop)
	p.waitFor("the focus in the room box", `document.activeElement?.id === "room-input"`, waitShort)
	p.typeKeys("lobby\r")
	p.waitJoined("lobby")

	n.gate.block("dave")
	n.restart()
	p.waitFor("the drop", `window.__test.status() !== "connected"`, waitShort)
	for i := 1; i <= 4; i++ {
		p.send(fmt.Sprintf("queued %d", i))
	}
	n.gate.unblock("dave")
	p.waitFor("the policy alert", `window.__test.alert() === "Disconnected by the server: rate limit exceeded repeatedly"`, waitLong)
	p.waitFor("the status to say it waits", `window.__test.status() === "reconnecting"`, waitShort)
	if s := eval[string](p, `document.getElementById("status").innerText`); !strings.Contains(s, "Reconnecting") {
		p.fatalf("status %q after 1008", s)
	}
	p.screenshot("policy")
	// The first message was posted; the others wait, marked.
	p.waitFor("the held messages", `(() => { const m = window.__test.messages();
		return m.length === 4 && m[0].id && m.slice(1).every((x) => x.unsent); })()`, waitShort)
}

// TestBrowserTokenExpiry: at the token's exp the server closes with 4001;
// the page asks for a new token, keeps the rooms on screen, and with the
// new token rejoins with since: what was said meanwhile appears.
func TestBrowserTokenExpiry(t *testing.T) {
	n := startNode(t, server.Config{Auth: auth.Config{Secret: testSecret}})
	p := signInWithToken(t, n, "erin", n.token(auth.TokenSpec{Subject: "erin", Name: "Erin", TTL: 12 * time.Second}), desktop)
	p.waitFor("the focus in the room box", `document.activeElement?.id === "room-input"`, waitShort)
	p.typeKeys("lobby\r")
	p.waitJoined("lobby")
	p.send("before expiry")
	p.waitTexts("the message", []string{"before expiry"}, waitShort)

	p.waitFor("the token form", `window.__test.visible("token-form")`, waitShort)
	p.waitFor("the reason", `document.getElementById("signin-error").textContent.includes("expired")`, waitShort)
	if s := eval[string](p, `document.getElementById("status-text").textContent`); s != "Signed out: token expired" {
		p.fatalf("status %q after 4001", s)
	}
	if !eval[bool](p, `window.__test.visible("chat")`) {
		p.fatalf("the rooms went away with the token")
	}
	n.publish("lobby", "frank", "said while Erin was away")
	p.screenshot("token-expired")

	fresh := n.token(auth.TokenSpec{Subject: "erin", Name: "Erin"})
	p.do("paste a new token", chromedp.SetValue(chromedp.ID("token-input"), fresh), chromedp.Focus(chromedp.ID("token-input")))
	p.typeKeys("\r")
	p.waitFor("the connection", `window.__test.status() === "connected" && document.getElementById("signin").hidden`, waitShort)
	p.waitTexts("what was said meanwhile", []string{"before expiry", "said while Erin was away"}, waitShort)
	p.checkMessages([]string{"before expiry", "said while Erin was away"}, []string{"Erin", "frank"}, "Erin")
}

// TestBrowserTokenRefresh: where the page can get a new token (dev mode),
// it sends refresh before exp, and the connection outlives the first
// token. The server's token clock is set back so that its hour-long dev
// tokens expire 12 s from now, which keeps the test short.
func TestBrowserTokenRefresh(t *testing.T) {
	const left = 12 * time.Second
	cfg := server.Config{Auth: auth.Config{Now: func() time.Time { return time.Now().Add(left - time.Hour) }}}
	n := startNode(t, cfg) // dev mode
	start := time.Now()
	p := openPage(t, "finn", n.URL(), desktop)
	p.signInDev("Finn")
	p.typeKeys("lobby\r")
	p.waitJoined("lobby")

	waitUntil(t, "the refresh", func() bool { return n.metric("chatd_commands_total", `type="refresh"`) >= 1 }, waitShort)
	// Past the first token's exp, when the server would have closed the
	// connection with 4001: nothing to await but time.
	time.Sleep(time.Until(start.Add(left + 2*time.Second)))
	p.send("still here")
	p.waitTexts("a message after the first exp", []string{"still here"}, waitShort)
	if c := n.metric("chatd_connections_total", ""); c != 1 {
		t.Errorf("%v connections: the refresh should keep the first one", c)
	}
	if closes := n.metric("chatd_server_closes_total", `code="4001"`); closes != 0 {
		t.Errorf("%v closes with 4001", closes)
	}
	if a := eval[string](p, `window.__test.alert()`); a != "" {
		p.fatalf("alert after a refresh: %q", a)
	}
	p.screenshot("refreshed")
}

// TestBrowserDrain: a node that shuts down sends draining and closes with
// 1001; the page says so, reconnects when the next node is up, and
// carries on with no gap.
func TestBrowserDrain(t *testing.T) {
	n := startNode(t, server.Config{DrainWindow: 500 * time.Millisecond}) // dev mode
	p := openPage(t, "gus", n.URL(), desktop)
	p.signInDev("Gus")
	p.typeKeys("lobby\r")
	p.waitJoined("lobby")
	p.send("before the drain")
	p.waitTexts("the message", []string{"before the drain"}, waitShort)

	n.drain()
	p.waitFor("the page to see the drain", `window.__test.status() !== "connected"`, waitShort)
	p.screenshot("drained")
	n.start(n.addr) // the next node: a new process, with a new dev secret
	p.waitFor("the reconnection", `window.__test.status() === "connected"`, waitLong)
	p.waitJoined("lobby")
	p.send("after the drain")
	p.waitTexts("both messages", []string{"before the drain", "after the drain"}, waitShort)
	log := eval[[]string](p, `window.__test.statusLog`)
	if !containsString(log, "Server restarting…") {
		t.Errorf("the status line never said the server was restarting: %q", log)
	}
	p.screenshot("reconnected")
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
