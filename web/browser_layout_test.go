package web_test

// Browser tests of the layout and of moving around: a phone-sized screen
// with the rooms in a drawer, unread counts, leaving a room, and history
// paging when scrolling up.

import (
	"context"
	"fmt"
	"testing"

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
