package web_test

// Browser tests of the layout and of moving around: a phone-sized screen
// with the rooms in a drawer, unread counts, leaving a room, and history
// paging when scrolling up.

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/chatd/chatd/internal/auth"
	"github.com/chatd/chatd/internal/protocol"
	"github.com/chatd/chatd/internal/server"
)

// checkFits fails when the page is wider than the screen or the message
// box and the status line are not on it.
func (p *page) checkFits() {
	p.t.Helper()
	bad := eval[string](p, `(() => {
		const vw = document.documentElement.clientWidth, vh = window.innerHeight;
		if (document.documentElement.scrollWidth > vw) return "the page scrolls sideways: " + document.documentElement.scrollWidth + " > " + vw;
		for (const id of ["status", "composer-input", "send", "rooms-toggle"]) {
			const r = document.getElementById(id).getBoundingClientRect();
			if (r.width === 0 || r.left < 0 || r.right > vw || r.top < 0 || r.bottom > vh) return id + " is off screen: " + JSON.stringify(r);
		}
		return "";
	})()`)
	if bad != "" {
		p.fatalf("layout: %s", bad)
	}
}

// openDrawer taps the rooms button and waits for the drawer to finish
// sliding in (a tap on a moving button can miss).
func (p *page) openDrawer() {
	p.t.Helper()
	p.do("open the drawer", chromedp.Tap(chromedp.ID("rooms-toggle")))
	p.waitFor("the drawer to open", `document.body.classList.contains("sidebar-open") &&
		Math.abs(document.getElementById("sidebar").getBoundingClientRect().left) < 0.5`, waitShort)
}

// TestBrowserPhone: on a phone-sized screen the rooms live in a drawer
// that opens by itself when there is no room yet; the page never scrolls
// sideways; a message in another room shows as an unread count on the
// drawer's button and in the room list; Escape closes the drawer.
func TestBrowserPhone(t *testing.T) {
	n := startNode(t, server.Config{Auth: auth.Config{Secret: testSecret}})
	p := signInWithToken(t, n, "hana", n.token(auth.TokenSpec{Subject: "hana", Name: "Hana"}), phone)

	p.waitFor("the drawer to open with the focus in the room box",
		`document.body.classList.contains("sidebar-open") && document.activeElement?.id === "room-input" && window.__test.visible("room-input")`, waitShort)
	p.screenshot("drawer-first")
	p.typeKeys("random\r")
	p.waitJoined("random")
	p.openDrawer()
	p.typeKeys("lobby\r")
	p.waitJoined("lobby")
	p.waitFor("the drawer to close", `!document.body.classList.contains("sidebar-open")`, waitShort)

	p.send("a long word: " + "supercalifragilisticexpialidocious-and-then-some-more-without-any-space")
	p.send("hello from a phone")
	// Hana's sends go through the page and ivan's through the API: wait
	// until hers are posted, or his reply may overtake them.
	p.waitTexts("Hana's two messages", []string{
		"a long word: supercalifragilisticexpialidocious-and-then-some-more-without-any-space",
		"hello from a phone",
	}, waitShort)
	n.publish("lobby", "ivan", "hi Hana, this is a reply that is long enough to wrap over a few lines on a small screen")
	n.publish("random", "ivan", "psst, over here")
	n.publish("random", "ivan", "and here")
	p.waitFor("the unread count on the drawer button", `document.getElementById("toggle-unread").textContent === "2" && window.__test.visible("toggle-unread")`, waitShort)
	p.waitFor("the unread count in the title", `document.title === "(2) chatd"`, waitShort)
	p.checkFits()
	p.screenshot("chat")

	p.openDrawer()
	label := eval[string](p, `document.querySelector('#room-list li[data-room="random"] .room-button').getAttribute("aria-label")`)
	if label != "#random, 2 unread" {
		p.fatalf("the room button says %q to a screen reader", label)
	}
	p.screenshot("drawer")
	p.typeKeys("\x1b")
	p.waitFor("Escape to close the drawer", `!document.body.classList.contains("sidebar-open") && document.activeElement?.id === "rooms-toggle"`, waitShort)

	// Reading the room clears its count.
	p.openDrawer()
	p.do("open #random", chromedp.Tap(chromedp.CSS(`#room-list li[data-room="random"] .room-button`)))
	p.waitFor("#random", `document.getElementById("room-title").textContent === "#random"`, waitShort)
	p.waitTexts("the messages of #random", []string{"psst, over here", "and here"}, waitShort)
	p.waitFor("no unread count", `window.__test.visible("toggle-unread") === false && document.title === "chatd"`, waitShort)

	// Leave #random from the drawer: #lobby is shown again, as it was.
	p.openDrawer()
	p.do("leave #random", chromedp.Tap(chromedp.CSS(`#room-list li[data-room="random"] button.leave`)))
	p.waitFor("#random gone", `!document.querySelector('#room-list li[data-room="random"]')`, waitShort)
	p.waitFor("#lobby shown", `document.getElementById("room-title").textContent === "#lobby"`, waitShort)
	p.typeKeys("\x1b")
	p.waitFor("the drawer to close", `!document.body.classList.contains("sidebar-open")`, waitShort)
	p.waitTexts("#lobby's messages", []string{
		"a long word: supercalifragilisticexpialidocious-and-then-some-more-without-any-space",
		"hello from a phone",
		"hi Hana, this is a reply that is long enough to wrap over a few lines on a small screen",
	}, waitShort)
	p.checkFits()
	p.screenshot("after-leave")

	// The dark theme follows the system's.
	p.do("prefer dark", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}},
		})
		return err
	}))
	p.waitFor("the dark theme", `getComputedStyle(document.body).backgroundColor === "rgb(21, 24, 28)"`, waitShort)
	p.screenshot("dark")
}

// TestBrowserHistoryPaging: a room with 130 messages shows the newest 50;
// scrolling to the top loads the older ones a page at a time, keeps what
// the user was reading in place, and stops at the first message.
func TestBrowserHistoryPaging(t *testing.T) {
	n := startNode(t, server.Config{})
	var texts, from []string
	for i := 1; i <= 130; i++ {
		m := protocol.Message{Room: "archive", From: "jo", Name: "Jo", Text: fmt.Sprintf("old message %03d", i)}
		if _, _, err := n.broker.Publish(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		texts = append(texts, m.Text)
		from = append(from, "Jo")
	}
	p := openPage(t, "kim", n.URL(), desktop)
	p.signInDev("Kim")
	p.typeKeys("archive\r")
	p.waitJoined("archive")
	p.waitTexts("the newest 50", texts[80:], waitShort)
	if !eval[bool](p, `(() => { const m = document.getElementById("messages"); return m.scrollHeight - m.scrollTop - m.clientHeight < 5; })()`) {
		p.fatalf("the room does not open at its newest message")
	}

	for _, want := range [][]string{texts[30:], texts} {
		top := eval[string](p, `window.__test.messages()[0].text`)
		p.do("scroll to the top", chromedp.Evaluate[chromedp.Void](`document.getElementById("messages").scrollTop = 0`))
		p.waitTexts(fmt.Sprintf("%d messages", len(want)), want, waitShort)
		// What was at the top is still in view: the page did not jump.
		inView := eval[bool](p, fmt.Sprintf(`(() => {
			const li = [...document.querySelectorAll("#messages li.msg")].find((li) => li.querySelector(".text").textContent === %q);
			const box = document.getElementById("messages").getBoundingClientRect(), r = li.getBoundingClientRect();
			return r.bottom > box.top && r.top < box.bottom; })()`, top))
		if !inView {
			p.fatalf("after loading older messages, %q is out of view", top)
		}
	}
	p.checkMessages(texts, from, "Kim")
	p.waitFor("the end of the history", `!window.__test.visible("load-older")`, waitShort)
	p.screenshot("history")
}

// TestBrowserModules checks the page's pure functions in the browser that
// runs them: id comparison (ids compare as numbers, part by part, never
// as strings or floats), where a message goes in a sorted list, and the
// backoff's bounds.
func TestBrowserModules(t *testing.T) {
	n := startNode(t, server.Config{})
	p := openPage(t, "modules", n.URL(), desktop)
	p.waitFor("the page", `document.querySelector('script[type=module]') !== null`, waitShort)
	importModule := func(name string) string {
		return fmt.Sprintf(`await import(document.querySelector('script[type=module]').src.replace("app.js", %q))`, name)
	}
	run := func(body string) string {
		v, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](`(async () => { const ids = `+importModule("ids.js")+`;
			const client = `+importModule("client.js")+`; `+body+` })()`, chromedp.EvalAwaitPromise))
		if err != nil {
			p.fatalf("%s: %v", body, err)
		}
		return v
	}

	compare := []struct {
		a, b string
		want int
	}{
		{"1-0", "1-0", 0},
		{"9-5", "10-0", -1},
		{"10-0", "9-5", 1},
		{"9-9", "9-10", -1},
		{"0-0", "1-0", -1},
		{"1700000000000-3", "1700000000000-12", -1},
		{"9007199254740993-0", "9007199254740992-0", 1}, // beyond a float's precision
		{"1-18446744073709551616", "1-18446744073709551615", 1},
		{"01-0", "1-0", 0},
	}
	for _, c := range compare {
		got := run(fmt.Sprintf(`return String(ids.compareIds(%q, %q));`, c.a, c.b))
		if got != fmt.Sprint(c.want) {
			t.Errorf("compareIds(%s, %s) = %s, want %d", c.a, c.b, got, c.want)
		}
	}
	if got := run(`try { ids.compareIds("1.5", "1-0"); return "no error"; } catch (e) { return e.name; }`); got != "TypeError" {
		t.Errorf("compareIds of a non-id: %s, want TypeError", got)
	}
	if got := run(`return String(ids.maxId(null, "2-0")) + " " + ids.maxId("10-0", "9-0") + " " + ids.maxId("3-1", null);`); got != "2-0 10-0 3-1" {
		t.Errorf("maxId: %s", got)
	}
	list := `[{id: "1-0"}, {id: "1-5"}, {id: "10-0"}]`
	for id, want := range map[string]string{"0-9": "0 false", "1-5": "1 true", "2-0": "2 false", "11-0": "3 false"} {
		got := run(fmt.Sprintf(`const r = ids.insertionIndex(%s, %q); return r.index + " " + r.found;`, list, id))
		if got != want {
			t.Errorf("insertionIndex(%s) = %s, want %s", id, got, want)
		}
	}
	// Full jitter: [0, min(30 s, 0.5 s · 2^attempt)).
	for attempt, want := range map[int]string{0: "0 499", 1: "0 999", 3: "0 3999", 6: "0 29999", 40: "0 29999"} {
		got := run(fmt.Sprintf(`return client.backoffDelay(%d, () => 0) + " " + client.backoffDelay(%d, () => 0.99999999);`, attempt, attempt))
		if got != want {
			t.Errorf("backoffDelay(%d) spans %s, want %s", attempt, got, want)
		}
	}
	if got := run(`return String(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(client.newCid()));`); got != "true" {
		t.Errorf("newCid is not a UUID v4")
	}
	p.screenshot("signin") // the page these ran in: the sign-in form
}

// TestBrowserKeyboard: the page in the order a keyboard visits it, and a
// room switch, a message and a leave with keys alone.
func TestBrowserKeyboard(t *testing.T) {
	n := startNode(t, server.Config{})
	p := openPage(t, "lee", n.URL(), desktop)
	p.signInDev("Lee")
	p.typeKeys("one\r")
	p.waitJoined("one")
	p.do("focus the room box", chromedp.Focus(chromedp.ID("room-input")))
	p.typeKeys("two\r")
	p.waitJoined("two")

	// Tab round the page (the browser's own controls sit between the last
	// element and the first).
	const focusName = `(() => { const e = document.activeElement; if (!e || e === document.body) return "";
		return e.id || e.getAttribute("aria-label") || e.textContent.trim(); })()`
	var order []string
	for i := 0; i < 14; i++ {
		p.typeKeys("\t")
		order = append(order, eval[string](p, focusName))
	}
	want := []string{"Skip to the message box", "signout", "room-input", "Join", "#one", "Leave #one", "#two", "Leave #two", "messages", "composer-input", "send"}
	if i := slices.Index(order, want[0]); i < 0 || len(order) < i+len(want) || !slices.Equal(order[i:i+len(want)], want) {
		t.Errorf("tab order %q, want %q", order, want)
	}

	// The skip link lands in the message box.
	for i := 0; eval[string](p, focusName) != want[0]; i++ {
		if i > 20 {
			p.fatalf("Tab never reaches the skip link")
		}
		p.typeKeys("\t")
	}
	p.typeKeys("\r")
	p.waitFor("the focus in the message box", `document.activeElement?.id === "composer-input"`, waitShort)
	p.typeKeys("in two\r")
	p.waitTexts("the message", []string{"in two"}, waitShort)

	// Shift+Tab back to #one's button, Enter shows it.
	for eval[string](p, focusName) != "#one" {
		p.typeKeys("\t", chromedp.ModifierShift)
	}
	p.typeKeys("\r")
	p.waitFor("#one", `document.getElementById("room-title").textContent === "#one" &&
		document.querySelector('#room-list li[data-room="one"] .room-button').getAttribute("aria-current") === "true"`, waitShort)
	// Tab to its leave button, Enter leaves, and #two comes back.
	p.typeKeys("\t")
	if f := eval[string](p, focusName); f != "Leave #one" {
		p.fatalf("after #one the focus is on %q", f)
	}
	p.typeKeys("\r")
	p.waitFor("#two shown", `document.getElementById("room-title").textContent === "#two" && !document.querySelector('#room-list li[data-room="one"]')`, waitShort)
	p.waitTexts("#two's message", []string{"in two"}, waitShort)
	if f := eval[string](p, focusName); f == "" {
		p.fatalf("the focus was lost after leaving a room")
	}
	p.screenshot("keyboard")

	// A reload keeps the session and the rooms (sessionStorage, this tab
	// only); signing out forgets both.
	p.do("reload", chromedp.Reload())
	p.waitFor("the connection after a reload", `window.__test.status() === "connected"`, waitShort)
	p.waitJoined("two")
	p.waitTexts("#two's history", []string{"in two"}, waitShort)
	p.do("sign out", chromedp.Click(chromedp.ID("signout")))
	p.waitFor("the sign-in form", `window.__test.visible("dev-form") && !window.__test.visible("chat") &&
		document.getElementById("status-text").textContent === "Signed out"`, waitShort)
	if left := eval[int](p, `sessionStorage.length`); left != 0 {
		p.fatalf("%d items left in sessionStorage after signing out", left)
	}
	waitUntil(t, "the connection to close", func() bool { return n.srv.Connections() == 0 }, waitShort)
}
