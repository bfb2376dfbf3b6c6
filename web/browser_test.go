package web_test

// Browser tests: the page in web/static, in a real headless Chromium,
// against a real chatd on a loopback port. Each test saves screenshots to
// its temporary directory (the paths are logged; go test -v shows them).

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/chatd/chatd/internal/server"
)

// signInDev signs in on a dev-mode server's page with the keyboard alone:
// the page puts the focus in the name box, Enter submits, and the focus
// lands in the room box.
func (p *page) signInDev(name string) {
	p.t.Helper()
	p.waitFor("the name box to have the focus", `document.activeElement?.id === "name-input"`, waitShort)
	p.typeKeys(name + "\r")
	p.waitFor("the chat to show", `window.__test.visible("chat") && document.getElementById("signin").hidden`, waitShort)
	p.waitFor("a connection", `window.__test.status() === "connected"`, waitShort)
}

// joinByKeyboard types a room name into the room box and presses Enter.
func (p *page) joinByKeyboard(room string) {
	p.t.Helper()
	p.do("focus the room box", chromedp.Focus(chromedp.ID("room-input")))
	p.typeKeys(room + "\r")
	p.waitJoined(room)
}

func (p *page) waitJoined(room string) {
	p.t.Helper()
	p.waitFor("#"+room+" to be shown", fmt.Sprintf(`document.getElementById("room-title").textContent === %q`, "#"+room), waitShort)
	p.waitFor("the join of #"+room, fmt.Sprintf(`(() => { const b = document.querySelector('#room-list li[data-room=%q] .room-button');
		return b && !b.getAttribute("aria-label").includes("joining"); })()`, room), waitShort)
}

// waitTexts waits until the room shown holds exactly these messages, all
// posted (none still unsent).
func (p *page) waitTexts(what string, texts []string, timeout time.Duration) {
	p.t.Helper()
	want, _ := jsonString(texts)
	p.waitFor(what, `(() => { const m = window.__test.messages();
		return JSON.stringify(m.map((x) => x.text)) === JSON.stringify(`+want+`) && m.every((x) => x.id && !x.unsent); })()`, timeout)
}

// checkMessages checks the DOM list against the texts sent, in order: no
// gap, no duplicate, ids strictly increasing, own messages marked.
func (p *page) checkMessages(texts []string, senders []string, me string) []domMessage {
	p.t.Helper()
	got := p.messages()
	if len(got) != len(texts) {
		p.fatalf("%d messages shown, %d sent:\n%v", len(got), len(texts), got)
	}
	ids := map[string]bool{}
	for i, m := range got {
		if m.Text != texts[i] || m.From != senders[i] {
			p.fatalf("message %d is %q from %q, want %q from %q", i, m.Text, m.From, texts[i], senders[i])
		}
		if m.ID == "" || m.Unsent || ids[m.ID] {
			p.fatalf("message %d (%q) has id %q, unsent %v: every message is shown once, posted", i, m.Text, m.ID, m.Unsent)
		}
		ids[m.ID] = true
		if i > 0 && !idLess(got[i-1].ID, m.ID) {
			p.fatalf("message ids out of order: %s then %s", got[i-1].ID, m.ID)
		}
		if m.Own != (m.From == me) {
			p.fatalf("message %d from %q: own = %v for %s", i, m.From, m.Own, me)
		}
	}
	return got
}

// TestBrowserChatAndRestart is the whole story: two users in two browser
// contexts sign in (Alice with the keyboard alone), see each other arrive
// and type, exchange messages (a hostile one among them), then the server
// dies under them. A new server takes the address; Alice reconnects while
// Bob's network is still down, and she writes while he queues a message.
// When Bob is back, both show the same messages, with no gap and no
// duplicate.
func TestBrowserChatAndRestart(t *testing.T) {
	n := startNode(t, server.Config{}) // dev mode, like a bare chatd
	alice := openPage(t, "alice", n.URL(), desktop)
	bob := openPage(t, "bob", n.URL(), desktop)

	// Alice: keyboard only, from the page's first focus.
	alice.signInDev("Alice")
	if f := alice.focused(); f != "room-input" {
		alice.fatalf("after signing in the focus is on %q, want the room box", f)
	}
	alice.typeKeys("lobby\r")
	alice.waitJoined("lobby")
	if f := alice.focused(); f != "composer-input" {
		alice.fatalf("after joining the focus is on %q, want the message box", f)
	}

	// Bob: with the mouse.
	bob.waitFor("the sign-in form", `window.__test.visible("name-input")`, waitShort)
	bob.do("sign in",
		chromedp.SendKeys(chromedp.ID("name-input"), "Bob"),
		chromedp.Click(chromedp.CSS(`#dev-form button[type=submit]`)),
	)
	bob.waitFor("a connection", `window.__test.status() === "connected"`, waitShort)
	bob.do("join", chromedp.SendKeys(chromedp.ID("room-input"), "lobby"), chromedp.Click(chromedp.CSS(`#join-form button[type=submit]`)))
	bob.waitJoined("lobby")

	// Presence, both ways.
	alice.waitFor("Bob in the member list", `window.__test.members().includes("Bob")`, waitShort)
	bob.waitFor("Alice in the member list", `JSON.stringify(window.__test.members()) === '["Alice","Bob"]'`, waitShort)

	// Typing: Bob types, Alice sees it; sending clears it.
	var texts, from []string
	sent := func(who, text string) {
		texts = append(texts, text)
		from = append(from, who)
	}
	bob.do("focus the message box", chromedp.Focus(chromedp.ID("composer-input")))
	bob.typeKeys("Hi Alice! Is the new build out?")
	alice.waitFor("Bob's typing indicator", `document.getElementById("typing").textContent === "Bob is typing…"`, waitShort)
	bob.typeKeys("\r")
	sent("Bob", "Hi Alice! Is the new build out?")
	alice.waitTexts("Bob's message", texts, waitShort)
	alice.waitFor("the typing indicator to clear", `document.getElementById("typing").textContent === ""`, waitShort)

	// Alice answers on two lines (Shift+Enter), Bob starts to answer: the
	// picture for the README.
	alice.typeKeys("Yes, since this morning.")
	alice.typeKeys("\r", chromedp.ModifierShift)
	alice.typeKeys("Restart a node and watch: nothing is lost.\r")
	sent("Alice", "Yes, since this morning.\nRestart a node and watch: nothing is lost.")
	bob.waitTexts("Alice's answer", texts, waitShort)
	bob.typeKeys("Trying it now")
	alice.waitFor("Bob's typing indicator", `document.getElementById("typing").textContent === "Bob is typing…"`, waitShort)
	readme := alice.screenshot("chat")
	if out := os.Getenv("CHATD_README_SCREENSHOT"); out != "" && readme != "" {
		copyFile(t, readme, out)
	}
	bob.typeKeys("\r")
	sent("Bob", "Trying it now")

	// Something hostile: it must show as text and run nothing.
	hostile := `<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>&amp;`
	alice.typeKeys(hostile + "\r")
	sent("Alice", hostile)
	for _, p := range []*page{alice, bob} {
		p.waitTexts("the conversation", texts, waitShort)
		p.checkMessages(texts, from, map[*page]string{alice: "Alice", bob: "Bob"}[p])
		if eval[bool](p, `"__pwned" in window || document.querySelector("#messages img, #messages script") !== null`) {
			p.fatalf("the hostile message was rendered as HTML")
		}
	}
	bob.screenshot("chat")

	// The server dies; a new one starts on the same address, over the
	// same broker (as another node over the same Redis would). Bob's
	// network stays down for now.
	n.gate.block("Bob")
	n.restart()
	bob.waitFor("Bob's page to see the drop", `window.__test.status() !== "connected"`, waitShort)
	alice.waitFor("Alice to reconnect", `window.__test.status() === "connected"`, waitLong)
	alice.waitJoined("lobby")
	waitUntil(t, "Bob to be refused by the gate", func() bool { return n.gate.refusals("Bob") > 0 }, waitLong)

	// Bob writes while he is away: the message waits for the connection.
	bob.do("focus the message box", chromedp.Focus(chromedp.ID("composer-input")))
	bob.typeKeys("written while away\r")
	bob.waitFor("the queued message", `window.__test.messages().some((m) => m.unsent && m.text === "written while away")`, waitShort)
	if s := eval[string](bob, `window.__test.status()`); s == "connected" {
		bob.fatalf("Bob connected through the gate")
	}

	// Alice writes meanwhile.
	for i := 1; i <= 3; i++ {
		text := fmt.Sprintf("while Bob is away %d", i)
		alice.typeKeys(text + "\r")
		sent("Alice", text)
	}
	alice.waitTexts("Alice's messages after the restart", texts, waitShort)
	alice.screenshot("bob-away")
	bob.screenshot("away")

	// Bob's network is back: he reconnects, rejoins with since, gets what
	// he missed, and his queued message is posted once.
	n.gate.unblock("Bob")
	sent("Bob", "written while away")
	bob.waitFor("Bob to reconnect", `window.__test.status() === "connected"`, waitLong)
	for _, p := range []*page{alice, bob} {
		p.waitTexts("the whole conversation", texts, waitShort)
		p.checkMessages(texts, from, map[*page]string{alice: "Alice", bob: "Bob"}[p])
	}
	aliceIDs, bobIDs := ids(alice.messages()), ids(bob.messages())
	if !slices.Equal(aliceIDs, bobIDs) {
		t.Fatalf("the two pages show different messages:\nalice %v\nbob   %v", aliceIDs, bobIDs)
	}
	alice.waitFor("Bob back in the member list", `window.__test.members().includes("Bob")`, waitShort)
	alice.screenshot("recovered")
	bob.screenshot("recovered")
}

func ids(ms []domMessage) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

// idLess compares message ids numerically, part by part.
func idLess(a, b string) bool {
	pa, pb := strings.SplitN(a, "-", 2), strings.SplitN(b, "-", 2)
	if len(pa) != 2 || len(pb) != 2 {
		return false
	}
	cmp := func(x, y string) int {
		if len(x) != len(y) {
			return len(x) - len(y)
		}
		return strings.Compare(x, y)
	}
	if c := cmp(pa[0], pb[0]); c != 0 {
		return c < 0
	}
	return cmp(pa[1], pb[1]) < 0
}

// waitUntil polls a condition of the test process (not of a page).
func waitUntil(t *testing.T, what string, cond func() bool, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err == nil {
		err = os.WriteFile(to, b, 0o644)
	}
	if err != nil {
		t.Errorf("copy %s to %s: %v", from, to, err)
		return
	}
	t.Logf("screenshot copied to %s", to)
}
