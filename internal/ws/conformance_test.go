package ws

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The Autobahn fuzzingclient case families, run by the raw client against
// the echo handler of cmd/wsecho (echoServe with the same options), with
// the behaviour Autobahn expects for a strict pass: the exact events, the
// close code, and the server closing the TCP connection at the end.

// step is one action of a case script.
type step struct {
	frames    []rawFrame
	chop      int  // write the frames' bytes in writes of chop bytes
	framewise bool // one write per frame
	pause     time.Duration
	want      []event
}

func send(frames ...rawFrame) step           { return step{frames: frames} }
func chopped(n int, frames ...rawFrame) step { return step{frames: frames, chop: n} }
func framewise(frames ...rawFrame) step      { return step{frames: frames, framewise: true} }
func pause(d time.Duration) step             { return step{pause: d} }
func want(events ...event) step              { return step{want: events} }
func failWith(codes ...int) step             { return want(evClose(codes...)) }

type rawCase struct {
	name  string
	steps []step
}

// runScript plays a case on a new connection. When the script does not end
// with the server's close, the client closes normally and expects the echo.
func runScript(t *testing.T, rc *rawConn, steps []step) {
	t.Helper()
	closed := false
	for _, s := range steps {
		switch {
		case s.pause > 0:
			time.Sleep(s.pause)
		case s.want != nil:
			rc.expect(s.want...)
			closed = s.want[len(s.want)-1].kind == "close"
		case s.framewise:
			for _, f := range s.frames {
				rc.send(f)
			}
		case s.chop > 0:
			rc.sendChopped(s.chop, s.frames...)
		default:
			rc.send(s.frames...)
		}
	}
	if closed {
		rc.expectEOF()
	} else {
		rc.closeHandshake()
	}
}

func runCases(t *testing.T, addr, extra string, cases []rawCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			runScript(t, dialRaw(t, addr, extra), tc.steps)
		})
	}
}

func randomBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// Case family 1: framing of text and binary messages of every length
// encoding.
func TestConformance1Framing(t *testing.T) {
	t.Parallel()
	ts := startServer(t, echoOpts(), nil)
	var cases []rawCase
	for _, n := range []int{0, 125, 126, 127, 128, 65535, 65536} {
		text, bin := pattern(n), randomBytes(uint64(n), n)
		cases = append(cases,
			rawCase{fmt.Sprintf("text-%d", n), []step{send(rawFrame{fin: true, op: opTxt, payload: text}), want(evMsg(opTxt, text))}},
			rawCase{fmt.Sprintf("binary-%d", n), []step{send(fBin(bin)), want(evMsg(opBin, bin))}},
		)
	}
	text, bin := pattern(65536), randomBytes(7, 65536)
	cases = append(cases,
		rawCase{"text-65536-chopped-997", []step{chopped(997, rawFrame{fin: true, op: opTxt, payload: text}), want(evMsg(opTxt, text))}},
		rawCase{"binary-65536-chopped-997", []step{chopped(997, fBin(bin)), want(evMsg(opBin, bin))}},
		rawCase{"binary-octetwise", []step{chopped(1, fBin(bin[:300])), want(evMsg(opBin, bin[:300]))}},
	)
	runCases(t, ts.addr, "", cases)
}

// Case family 2: pings and pongs.
func TestConformance2PingPong(t *testing.T) {
	t.Parallel()
	ts := startServer(t, echoOpts(), nil)
	bin125 := string(randomBytes(125, 125))
	tenPings := make([]rawFrame, 10)
	pongs := make([]event, 10)
	for i := range tenPings {
		tenPings[i] = fPing(fmt.Sprintf("payload-%d", i))
		pongs[i] = evPong(fmt.Sprintf("payload-%d", i))
	}
	cases := []rawCase{
		{"2.1-empty", []step{send(fPing("")), want(evPong(""))}},
		{"2.2-text-payload", []step{send(fPing("Hello, world!")), want(evPong("Hello, world!"))}},
		{"2.3-binary-payload", []step{send(fPing("\x00\xff\xfe\xfd\xfc\xfb\x00\xff")), want(evPong("\x00\xff\xfe\xfd\xfc\xfb\x00\xff"))}},
		{"2.4-125-bytes", []step{send(fPing(bin125)), want(evPong(bin125))}},
		{"2.5-126-bytes", []step{send(fPing(bin125 + "x")), failWith(1002)}},
		{"2.6-125-bytes-octetwise", []step{chopped(1, fPing(bin125)), want(evPong(bin125))}},
		{"2.7-unsolicited-pong", []step{send(fPong("")), pause(20 * time.Millisecond)}},
		{"2.8-unsolicited-pong-payload", []step{send(fPong("unsolicited pong payload")), pause(20 * time.Millisecond)}},
		{"2.9-pong-then-ping", []step{send(fPong("unsolicited pong payload"), fPing("ping payload")), want(evPong("ping payload"))}},
		{"2.10-ten-pings", []step{send(tenPings...), want(pongs...)}},
		{"2.11-ten-pings-framewise", []step{framewise(tenPings...), want(pongs...)}},
		{"2.x-ten-pings-octetwise", []step{chopped(1, tenPings...), want(pongs...)}},
	}
	runCases(t, ts.addr, "", cases)

	t.Run("every-payload-length", func(t *testing.T) {
		rc := dialRaw(t, ts.addr, "")
		var frames []rawFrame
		var events []event
		for n := 0; n <= 125; n++ {
			p := string(randomBytes(uint64(n), n))
			frames = append(frames, fPing(p))
			events = append(events, evPong(p))
		}
		rc.send(frames...)
		rc.expect(events...)
		// An unsolicited pong gets no answer: the next event is the echo.
		rc.send(fPong("x"), fText("after"))
		rc.expect(evText("after"))
		rc.closeHandshake()
	})
}

// Case family 3: reserved bits.
func TestConformance3ReservedBits(t *testing.T) {
	t.Parallel()
	ts := startServer(t, echoOpts(), nil)
	hello := fText("Hello, world!")
	cases := []rawCase{
		{"3.1-rsv1-text", []step{send(hello.withRSV(4)), failWith(1002)}},
		{"3.2-rsv2-after-valid", []step{send(hello, hello.withRSV(2), fPing("")), want(evText("Hello, world!"), evClose(1002))}},
		{"3.3-rsv3-framewise", []step{framewise(hello, hello.withRSV(6), fPing("")), want(evText("Hello, world!"), evClose(1002))}},
		{"3.4-rsv4-octetwise", []step{chopped(1, hello, hello.withRSV(1), fPing("")), want(evText("Hello, world!"), evClose(1002))}},
		{"3.5-rsv5-binary", []step{send(fBin([]byte{0, 1, 2}).withRSV(5)), failWith(1002)}},
		{"3.6-rsv6-ping", []step{send(fPing("").withRSV(6)), failWith(1002)}},
		{"3.7-rsv7-close", []step{send(fClose(1000, "").withRSV(7)), failWith(1002)}},
		{"rsv2-continuation", []step{send(frag(opTxt, false, []byte("a")), frag(opCont, true, []byte("b")).withRSV(2)), failWith(1002)}},
	}
	runCases(t, ts.addr, "", cases)
}

// Case family 4: reserved opcodes.
func TestConformance4Opcodes(t *testing.T) {
	t.Parallel()
	ts := startServer(t, echoOpts(), nil)
	var cases []rawCase
	for _, op := range []byte{3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF} {
		bad := rawFrame{fin: true, op: op}
		badP := rawFrame{fin: true, op: op, payload: []byte("reserved opcode payload")}
		cases = append(cases,
			rawCase{fmt.Sprintf("op%X", op), []step{send(bad), failWith(1002)}},
			rawCase{fmt.Sprintf("op%X-payload", op), []step{send(badP), failWith(1002)}},
			rawCase{fmt.Sprintf("op%X-between", op), []step{send(fText("Hello, world!"), badP, fPing("")), want(evText("Hello, world!"), evClose(1002))}},
			rawCase{fmt.Sprintf("op%X-octetwise", op), []step{chopped(1, fText("Hello, world!"), badP, fPing("")), want(evText("Hello, world!"), evClose(1002))}},
		)
	}
	runCases(t, ts.addr, "", cases)
}

// Case family 5: fragmentation.
func TestConformance5Fragmentation(t *testing.T) {
	t.Parallel()
	ts := startServer(t, echoOpts(), nil)
	f1, f2 := frag(opTxt, false, []byte("fragment1")), frag(opCont, true, []byte("fragment2"))
	two := evText("fragment1fragment2")
	strayCont := frag(opCont, false, []byte("fragment1"))
	strayFin := frag(opCont, true, []byte("fragment1"))
	five := []rawFrame{
		frag(opTxt, false, []byte("fragment1")), frag(opCont, false, []byte("fragment2")),
		frag(opCont, false, []byte("fragment3")), frag(opCont, false, []byte("fragment4")),
		frag(opCont, true, []byte("fragment5")),
	}
	tiny := fragments(opBin, randomBytes(5, 1000), 1)
	var empties []rawFrame
	for range 10 {
		empties = append(empties, frag(opCont, false, nil))
	}
	emptyFirst := append(append([]rawFrame{frag(opTxt, false, nil)}, empties...), frag(opCont, true, nil))
	cases := []rawCase{
		{"5.1-fragmented-ping", []step{send(frag(opPng, false, []byte("ping")), frag(opCont, true, []byte("ping"))), failWith(1002)}},
		{"5.2-fragmented-pong", []step{send(frag(opPog, false, []byte("pong")), frag(opCont, true, []byte("pong"))), failWith(1002)}},
		{"fragmented-close", []step{send(rawFrame{op: opCls, payload: []byte{3, 232}}, frag(opCont, true, nil)), failWith(1002)}},
		{"5.3-text-2-fragments", []step{send(f1, f2), want(two)}},
		{"5.4-framewise", []step{framewise(f1, f2), want(two)}},
		{"5.5-octetwise", []step{chopped(1, f1, f2), want(two)}},
		{"5.6-ping-between", []step{send(f1, fPing("pongme!"), f2), want(evPong("pongme!"), two)}},
		{"5.7-ping-between-framewise", []step{framewise(f1, fPing("pongme!"), f2), want(evPong("pongme!"), two)}},
		{"5.8-ping-between-octetwise", []step{chopped(1, f1, fPing("pongme!"), f2), want(evPong("pongme!"), two)}},
		{"5.9-continuation-nothing-to-continue", []step{send(strayCont, fText("text")), failWith(1002)}},
		{"5.10-framewise", []step{framewise(strayCont, fText("text")), failWith(1002)}},
		{"5.11-octetwise", []step{chopped(1, strayCont, fText("text")), failWith(1002)}},
		{"5.12-fin-continuation", []step{send(strayFin, fText("text")), failWith(1002)}},
		{"5.13-framewise", []step{framewise(strayFin, fText("text")), failWith(1002)}},
		{"5.14-octetwise", []step{chopped(1, strayFin, fText("text")), failWith(1002)}},
		{"5.15-after-message", []step{send(f1, f2, strayCont, fText("text")), want(two, evClose(1002))}},
		{"5.16-repeated-stray", []step{send(strayCont, f1, f2, strayCont, f1, f2), failWith(1002)}},
		{"5.17-repeated-stray-fin", []step{send(strayFin, f1, f2, strayFin, f1, f2), failWith(1002)}},
		{"5.18-two-text-starts", []step{send(f1, frag(opTxt, true, []byte("fragment2"))), failWith(1002)}},
		{"5.19-pings-with-pauses", []step{
			send(five[0]), send(five[1]), send(fPing("pongme 1!")), want(evPong("pongme 1!")),
			pause(50 * time.Millisecond), send(five[2]), send(five[3]), send(fPing("pongme 2!")), want(evPong("pongme 2!")),
			pause(50 * time.Millisecond), send(five[4]), want(evText("fragment1fragment2fragment3fragment4fragment5")),
		}},
		{"5.20-pings-with-pauses-framewise", []step{
			framewise(five[0], five[1], fPing("pongme 1!")), want(evPong("pongme 1!")),
			pause(50 * time.Millisecond), framewise(five[2], five[3], fPing("pongme 2!")), want(evPong("pongme 2!")),
			pause(50 * time.Millisecond), framewise(five[4]), want(evText("fragment1fragment2fragment3fragment4fragment5")),
		}},
		{"binary-in-text", []step{send(f1, frag(opBin, true, nil)), failWith(1002)}},
		{"close-inside-message", []step{send(f1, fClose(1000, "")), failWith(1000)}},
		{"1000-one-byte-fragments", []step{send(tiny...), want(evMsg(opBin, randomBytes(5, 1000)))}},
		{"1000-one-byte-fragments-octetwise", []step{chopped(7, tiny...), want(evMsg(opBin, randomBytes(5, 1000)))}},
		{"empty-fragments", []step{send(emptyFirst...), want(evText(""))}},
		{"empty-fragments-around-data", []step{send(frag(opTxt, false, nil), frag(opCont, false, []byte("middle")), frag(opCont, false, nil), frag(opCont, true, nil)), want(evText("middle"))}},
		{"ping-between-empty-fragments", []step{send(frag(opBin, false, nil), fPing("p"), frag(opCont, true, nil)), want(evPong("p"), evMsg(opBin, nil))}},
		// 10.1.1: a large message in fragments of 1300 bytes.
		{"10.1.1-65536-in-1300", []step{send(fragments(opTxt, pattern(65536), 1300)...), want(evMsg(opTxt, pattern(65536)))}},
	}
	runCases(t, ts.addr, "", cases)
}

// utf8Case is one of the Autobahn 6.x UTF-8 test sequences (after Markus
// Kuhn's decoder stress test) with whether it is valid UTF-8.
type utf8Case struct {
	name  string
	valid bool
	data  string
}

const kosme = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5" // κόσμε

func autobahnUTF8() []utf8Case {
	cs := []utf8Case{
		// 6.5 Some valid UTF-8 sequences.
		{"dollar", true, "hello\x24world"},
		{"cent", true, "hello\xc2\xa2world"},
		{"euro", true, "hello\xe2\x82\xacworld"},
		{"U+24B62", true, "hello\xf0\xa4\xad\xa2world"},
		{"kosme", true, kosme},
		{"hello-utf8", true, "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!"},
		// 6.7 First possible sequence of a certain length.
		{"first-1", true, "\x00"}, {"first-2", true, "\xc2\x80"}, {"first-3", true, "\xe0\xa0\x80"}, {"first-4", true, "\xf0\x90\x80\x80"},
		// 6.8 First possible sequence of length 5 and 6 (invalid).
		{"first-5", false, "\xf8\x88\x80\x80\x80"}, {"first-6", false, "\xfc\x84\x80\x80\x80\x80"},
		// 6.9 Last possible sequence of a certain length.
		{"last-1", true, "\x7f"}, {"last-2", true, "\xdf\xbf"}, {"last-3", true, "\xef\xbf\xbf"}, {"last-4", true, "\xf4\x8f\xbf\xbf"},
		// 6.10 Last possible sequence of length 4, 5, 6 (invalid).
		{"last-4-invalid", false, "\xf7\xbf\xbf\xbf"}, {"last-5", false, "\xfb\xbf\xbf\xbf\xbf"}, {"last-6", false, "\xfd\xbf\xbf\xbf\xbf\xbf"},
		// 6.11 Other boundary conditions.
		{"U+D7FF", true, "\xed\x9f\xbf"}, {"U+E000", true, "\xee\x80\x80"}, {"U+FFFD", true, "\xef\xbf\xbd"},
		{"U+10FFFF", true, "\xf4\x8f\xbf\xbf"}, {"U+110000", false, "\xf4\x90\x80\x80"},
		// 6.12 Unexpected continuation bytes.
		{"cont-80", false, "\x80"}, {"cont-bf", false, "\xbf"}, {"cont-2", false, "\x80\xbf"}, {"cont-3", false, "\x80\xbf\x80"},
		{"cont-4", false, "\x80\xbf\x80\xbf"}, {"cont-5", false, "\x80\xbf\x80\xbf\x80"}, {"cont-6", false, "\x80\xbf\x80\xbf\x80\xbf"},
		// 6.14 Sequences with the last continuation byte missing.
		{"missing-c0", false, "\xc0"}, {"missing-e080", false, "\xe0\x80"}, {"missing-f08080", false, "\xf0\x80\x80"},
		{"missing-f8", false, "\xf8\x80\x80\x80"}, {"missing-fc", false, "\xfc\x80\x80\x80\x80"},
		{"missing-df", false, "\xdf"}, {"missing-efbf", false, "\xef\xbf"}, {"missing-f7bfbf", false, "\xf7\xbf\xbf"},
		{"missing-fb", false, "\xfb\xbf\xbf\xbf"}, {"missing-fd", false, "\xfd\xbf\xbf\xbf\xbf"},
		// 6.15 Concatenation of incomplete sequences.
		{"incomplete-concat", false, "\xc0\xe0\x80\xf0\x80\x80\xf8\x80\x80\x80\xfc\x80\x80\x80\x80\xdf\xef\xbf\xf7\xbf\xbf\xfb\xbf\xbf\xbf\xfd\xbf\xbf\xbf\xbf"},
		// 6.16 Impossible bytes.
		{"fe", false, "\xfe"}, {"ff", false, "\xff"}, {"fefeffff", false, "\xfe\xfe\xff\xff"},
		// 6.17 Overlong ASCII.
		{"overlong-2", false, "\xc0\xaf"}, {"overlong-3", false, "\xe0\x80\xaf"}, {"overlong-4", false, "\xf0\x80\x80\xaf"},
		{"overlong-5", false, "\xf8\x80\x80\x80\xaf"}, {"overlong-6", false, "\xfc\x80\x80\x80\x80\xaf"},
		// 6.18 Maximum overlong sequences.
		{"max-overlong-2", false, "\xc1\xbf"}, {"max-overlong-3", false, "\xe0\x9f\xbf"}, {"max-overlong-4", false, "\xf0\x8f\xbf\xbf"},
		{"max-overlong-5", false, "\xf8\x87\xbf\xbf\xbf"}, {"max-overlong-6", false, "\xfc\x83\xbf\xbf\xbf\xbf"},
		// 6.19 Overlong NUL.
		{"nul-2", false, "\xc0\x80"}, {"nul-3", false, "\xe0\x80\x80"}, {"nul-4", false, "\xf0\x80\x80\x80"},
		{"nul-5", false, "\xf8\x80\x80\x80\x80"}, {"nul-6", false, "\xfc\x80\x80\x80\x80\x80"},
		// 6.20 Single UTF-16 surrogates.
		{"U+D800", false, "\xed\xa0\x80"}, {"U+DB7F", false, "\xed\xad\xbf"}, {"U+DB80", false, "\xed\xae\x80"},
		{"U+DBFF", false, "\xed\xaf\xbf"}, {"U+DC00", false, "\xed\xb0\x80"}, {"U+DF80", false, "\xed\xbe\x80"}, {"U+DFFF", false, "\xed\xbf\xbf"},
		// 6.21 Paired UTF-16 surrogates.
		{"pair-1", false, "\xed\xa0\x80\xed\xb0\x80"}, {"pair-2", false, "\xed\xa0\x80\xed\xbf\xbf"},
		{"pair-3", false, "\xed\xad\xbf\xed\xb0\x80"}, {"pair-4", false, "\xed\xad\xbf\xed\xbf\xbf"},
		{"pair-5", false, "\xed\xae\x80\xed\xb0\x80"}, {"pair-6", false, "\xed\xae\x80\xed\xbf\xbf"},
		{"pair-7", false, "\xed\xaf\xbf\xed\xb0\x80"}, {"pair-8", false, "\xed\xaf\xbf\xed\xbf\xbf"},
		// 6.3 and 6.4: valid text with an invalid code point inside.
		{"kosme-surrogate-edited", false, kosme + "\xed\xa0\x80edited"},
		{"kosme-U+110000-edited", false, kosme + "\xf4\x90\x80\x80edited"},
		// 6.23 The replacement character.
		{"replacement", true, "\xef\xbf\xbd"},
	}
	// 6.12.8: all 64 continuation bytes; 6.13: lonely start bytes, each
	// followed by a space.
	var all strings.Builder
	for b := 0x80; b <= 0xbf; b++ {
		all.WriteByte(byte(b))
	}
	cs = append(cs, utf8Case{"all-continuation-bytes", false, all.String()})
	for _, r := range [][2]int{{0xc0, 0xdf}, {0xe0, 0xef}, {0xf0, 0xf7}, {0xf8, 0xfb}, {0xfc, 0xfd}} {
		var s strings.Builder
		for b := r[0]; b <= r[1]; b++ {
			s.WriteByte(byte(b))
			s.WriteByte(' ')
		}
		cs = append(cs, utf8Case{fmt.Sprintf("lonely-%x", r[0]), false, s.String()})
	}
	// 6.22: non-characters are valid UTF-8.
	for plane := 0; plane <= 16; plane++ {
		for _, low := range []rune{0xFFFE, 0xFFFF} {
			r := rune(plane)<<16 | low
			cs = append(cs, utf8Case{fmt.Sprintf("U+%X", r), true, string(r)})
		}
	}
	for r := rune(0xFDD0); r <= 0xFDEF; r += 5 {
		cs = append(cs, utf8Case{fmt.Sprintf("U+%X", r), true, string(r)})
	}
	// 6.6: every prefix of κόσμε; those that end inside a rune are invalid.
	for i := 1; i <= len(kosme); i++ {
		cs = append(cs, utf8Case{fmt.Sprintf("kosme-prefix-%d", i), utf8.ValidString(kosme[:i]), kosme[:i]})
	}
	return cs
}

// failPoint returns the length of the shortest prefix of s that no valid
// UTF-8 text starts with: where a fail-fast validator must stop. It is
// len(s)+1 when only the end of the message makes s invalid.
func failPoint(s string) int {
	conts := []byte{0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf}
	extendable := func(p string) bool {
		if utf8.ValidString(p) {
			return true
		}
		for _, a := range conts {
			for _, b := range append(conts, 0) {
				for _, c := range append(conts, 0) {
					tail := []byte{a}
					if b != 0 {
						tail = append(tail, b)
						if c != 0 {
							tail = append(tail, c)
						}
					}
					if utf8.ValidString(p + string(tail)) {
						return true
					}
				}
			}
		}
		return false
	}
	for i := 1; i <= len(s); i++ {
		if !extendable(s[:i]) {
			return i
		}
	}
	return len(s) + 1
}

// Case family 6: UTF-8 handling of text messages.
func TestConformance6UTF8(t *testing.T) {
	t.Parallel()
	ts := startServer(t, echoOpts(), nil)
	for _, uc := range autobahnUTF8() {
		if uc.valid != utf8.ValidString(uc.data) {
			t.Fatalf("%s: the table says valid=%v", uc.name, uc.valid)
		}
		t.Run(uc.name, func(t *testing.T) {
			// As one frame.
			rc := dialRaw(t, ts.addr, "")
			rc.send(fText(uc.data))
			if uc.valid {
				rc.expect(evText(uc.data))
				rc.closeHandshake()
			} else {
				rc.expectClose(1007)
			}

			// One byte per fragment, a ping after each fragment to see
			// that the server is still there, until the byte that makes
			// the text invalid: the server must fail the connection then,
			// without waiting for the rest of the message.
			rc = dialRaw(t, ts.addr, "")
			fail := failPoint(uc.data)
			frames := fragments(opTxt, []byte(uc.data), 1)
			for i, f := range frames {
				if i+1 == fail {
					rc.send(f)
					rc.expectClose(1007)
					return
				}
				if f.fin {
					rc.send(f)
					break
				}
				rc.send(f, fPing(fmt.Sprint(i)))
				rc.expect(evPong(fmt.Sprint(i)))
			}
			if uc.valid {
				rc.expect(evText(uc.data))
				rc.closeHandshake()
			} else {
				rc.expectClose(1007)
			}
		})
	}

	// 6.1: empty text messages.
	runCases(t, ts.addr, "", []rawCase{
		{"6.1.1-empty", []step{send(fText("")), want(evText(""))}},
		{"6.1.2-three-empty-fragments", []step{send(frag(opTxt, false, nil), frag(opCont, false, nil), frag(opCont, true, nil)), want(evText(""))}},
		{"6.1.3-empty-middle-empty", []step{send(frag(opTxt, false, nil), frag(opCont, false, []byte("middle frame payload")), frag(opCont, true, nil)), want(evText("middle frame payload"))}},
	})

	// 6.2 and 6.3: a text split on code points and on octets.
	hello := "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!"
	invalid := kosme + "\xed\xa0\x80edited"
	perRune := func(s string) []rawFrame {
		var chunks [][]byte
		for i := 0; i < len(s); {
			_, n := utf8.DecodeRuneInString(s[i:])
			chunks = append(chunks, []byte(s[i:i+n]))
			i += n
		}
		var fs []rawFrame
		for i, c := range chunks {
			op := byte(opCont)
			if i == 0 {
				op = opTxt
			}
			fs = append(fs, frag(op, i == len(chunks)-1, c))
		}
		return fs
	}
	runCases(t, ts.addr, "", []rawCase{
		{"6.2.2-valid-two-fragments-on-code-point", []step{send(frag(opTxt, false, []byte(hello[:8])), frag(opCont, true, []byte(hello[8:]))), want(evText(hello))}},
		{"6.2.3-valid-per-code-point", []step{send(perRune(hello)...), want(evText(hello))}},
		{"6.2.4-valid-per-octet", []step{send(fragments(opTxt, []byte(hello), 1)...), want(evText(hello))}},
		{"6.3.1-invalid-one-frame", []step{send(fText(invalid)), failWith(1007)}},
		{"6.3.2-invalid-per-octet", []step{send(fragments(opTxt, []byte(invalid), 1)...), failWith(1007)}},
		{"invalid-per-code-point", []step{send(perRune(invalid)...), failWith(1007)}},
	})

	// 6.4: fail fast. The parts are sent with pauses, and the server must
	// close after the invalid part without waiting for the third.
	type ff struct {
		name           string
		p1, p2, p3     string
		oneFrame       bool
		invalidAtStart bool
	}
	for _, c := range []ff{
		{name: "6.4.1-frames", p1: kosme, p2: "\xf4\x90\x80\x80", p3: "edited"},
		{name: "6.4.2-frames-split-code-point", p1: kosme + "\xf4", p2: "\x90", p3: "\x80\x80edited"},
		{name: "6.4.3-one-frame-chops", p1: kosme, p2: "\xf4\x90\x80\x80", p3: "edited", oneFrame: true},
		{name: "6.4.4-one-frame-chops-split-code-point", p1: kosme + "\xf4", p2: "\x90", p3: "\x80\x80edited", oneFrame: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			rc := dialRaw(t, ts.addr, "")
			var parts [][]byte
			if c.oneFrame {
				b := fText(c.p1 + c.p2 + c.p3).encode()
				hl := len(b) - len(c.p1+c.p2+c.p3)
				parts = [][]byte{b[:hl+len(c.p1)], b[hl+len(c.p1) : hl+len(c.p1+c.p2)], b[hl+len(c.p1+c.p2):]}
			} else {
				parts = [][]byte{
					frag(opTxt, false, []byte(c.p1)).encode(),
					frag(opCont, false, []byte(c.p2)).encode(),
					frag(opCont, true, []byte(c.p3)).encode(),
				}
			}
			rc.write(parts[0])
			rc.expectQuiet(50 * time.Millisecond)
			rc.write(parts[1])
			rc.expect(evClose(1007))
			rc.nc.Write(parts[2]) // may fail: the server closed
			rc.expectEOF()
		})
	}
}

// Case family 7: the closing handshake.
func TestConformance7Close(t *testing.T) {
	t.Parallel()
	ts := startServer(t, echoOpts(), nil)
	big := pattern(256 << 10)
	reason123 := strings.Repeat("*", 123)
	cases := []rawCase{
		{"7.1.1-text-then-close", []step{send(fText("Hello World!")), want(evText("Hello World!")), send(fClose(1000, "")), failWith(1000)}},
		{"7.1.2-two-closes", []step{send(fClose(1000, ""), fClose(1000, "")), failWith(1000)}},
		{"7.1.3-ping-after-close", []step{send(fClose(1000, ""), fPing("Hello World!")), failWith(1000)}},
		{"7.1.4-text-after-close", []step{send(fClose(1000, ""), fText("Hello World!")), failWith(1000)}},
		{"7.1.5-fragment-close-fragment", []step{send(frag(opTxt, false, []byte("fragment1")), fClose(1000, ""), frag(opCont, true, []byte("fragment2"))), failWith(1000)}},
		{"7.1.6-large-message-close-ping", []step{send(rawFrame{fin: true, op: opTxt, payload: big}, fClose(1000, ""), fPing("Hello World!")), want(evMsg(opTxt, big), evClose(1000))}},
		{"7.3.1-empty-close", []step{send(fClose(0, "")), failWith(0, 1000)}},
		{"7.3.2-one-byte-close", []step{send(fCloseRaw([]byte{0x03})), failWith(1002)}},
		{"7.3.3-close-1000", []step{send(fClose(1000, "")), failWith(1000)}},
		{"7.3.4-close-1000-reason", []step{send(fClose(1000, "Hello World!")), failWith(1000)}},
		{"7.3.5-close-123-byte-reason", []step{send(fClose(1000, reason123)), failWith(1000)}},
		{"7.3.6-close-124-byte-reason", []step{send(fClose(1000, reason123+"*")), failWith(1002)}},
		{"7.5.1-close-invalid-utf8-reason", []step{send(fClose(1000, kosme+"\xed\xa0\x80edited")), failWith(1007)}},
		{"close-reason-octetwise", []step{chopped(1, fClose(1001, "going")), failWith(1001)}},
		{"data-after-close-in-later-write", []step{send(fClose(1000, "")), pause(10 * time.Millisecond), send(fText("late"), fPing("late")), failWith(1000)}},
	}
	// 7.7: valid codes are echoed; 7.9 and 7.13: invalid ones fail.
	for _, code := range []int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999} {
		cases = append(cases, rawCase{fmt.Sprintf("7.7-code-%d", code), []step{send(fClose(code, "")), failWith(code)}})
	}
	for _, code := range []int{0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		payload := binary.BigEndian.AppendUint16(nil, uint16(code))
		cases = append(cases, rawCase{fmt.Sprintf("7.9-code-%d", code), []step{send(fCloseRaw(payload)), failWith(1002)}})
	}
	runCases(t, ts.addr, "", cases)
}

// Case family 9: large messages, in one frame, fragmented, and chopped
// into small writes. Kept to sizes that stay fast under -race.
func TestConformance9Large(t *testing.T) {
	t.Parallel()
	ts := startServer(t, echoOpts(), nil)
	mb := pattern(1 << 20)
	mbBin := randomBytes(9, 1<<20)
	var cases []rawCase
	for _, n := range []int{64 << 10, 256 << 10, 1 << 20} {
		cases = append(cases,
			rawCase{fmt.Sprintf("9.1-text-%dK", n>>10), []step{send(rawFrame{fin: true, op: opTxt, payload: mb[:n]}), want(evMsg(opTxt, mb[:n]))}},
			rawCase{fmt.Sprintf("9.2-binary-%dK", n>>10), []step{send(fBin(mbBin[:n])), want(evMsg(opBin, mbBin[:n]))}},
		)
	}
	big := randomBytes(16, 16<<20)
	cases = append(cases, rawCase{"9.2.6-binary-16M", []step{send(fBin(big)), want(evMsg(opBin, big))}})
	for _, size := range []int{64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20} {
		cases = append(cases,
			rawCase{fmt.Sprintf("9.3-text-1M-in-%d", size), []step{send(fragments(opTxt, mb, size)...), want(evMsg(opTxt, mb))}},
			rawCase{fmt.Sprintf("9.4-binary-1M-in-%d", size), []step{send(fragments(opBin, mbBin, size)...), want(evMsg(opBin, mbBin))}},
		)
	}
	for _, chop := range []int{64, 2048} {
		cases = append(cases,
			rawCase{fmt.Sprintf("9.5-text-256K-chops-%d", chop), []step{chopped(chop, rawFrame{fin: true, op: opTxt, payload: mb[:256<<10]}), want(evMsg(opTxt, mb[:256<<10]))}},
			rawCase{fmt.Sprintf("9.6-binary-256K-chops-%d", chop), []step{chopped(chop, fBin(mbBin[:256<<10])), want(evMsg(opBin, mbBin[:256<<10]))}},
		)
	}
	runCases(t, ts.addr, "", cases)

	// 9.7 and 9.8: many messages, one round trip each.
	for _, n := range []int{0, 16, 64, 256, 1024, 4096} {
		t.Run(fmt.Sprintf("9.7-round-trips-%d", n), func(t *testing.T) {
			rc := dialRaw(t, ts.addr, "")
			for i := range 50 {
				op := byte(opTxt)
				p := pattern(n)
				if i%2 == 1 {
					op, p = opBin, mbBin[:n]
				}
				rc.send(rawFrame{fin: true, op: op, payload: p})
				rc.expect(evMsg(op, p))
			}
			rc.closeHandshake()
		})
	}
}

// Malformed frame headers, masking and the read limit.
func TestConformanceFrameErrors(t *testing.T) {
	t.Parallel()
	ts := startServer(t, echoOpts(), nil)
	cases := []rawCase{
		{"16-bit-length-for-5-bytes", []step{send(rawFrame{fin: true, op: opBin, payload: []byte("abcde"), lenCode: 126, length: 5}), failWith(1002)}},
		{"16-bit-length-for-125-bytes", []step{send(rawFrame{fin: true, op: opBin, payload: pattern(125), lenCode: 126, length: 125}), failWith(1002)}},
		{"64-bit-length-for-200-bytes", []step{send(rawFrame{fin: true, op: opBin, payload: pattern(200), lenCode: 127, length: 200}), failWith(1002)}},
		{"64-bit-length-for-65535-bytes", []step{send(rawFrame{fin: true, op: opBin, payload: pattern(65535), lenCode: 127, length: 65535}), failWith(1002)}},
		{"64-bit-length-top-bit", []step{send(rawFrame{fin: true, op: opBin, lenCode: 127, length: 1<<63 | 70000}), failWith(1002)}},
		{"64-bit-length-top-bit-control", []step{send(rawFrame{fin: true, op: opPng, lenCode: 127, length: 1 << 63}), failWith(1002)}},
		{"control-with-16-bit-length", []step{send(rawFrame{fin: true, op: opPng, payload: []byte("x"), lenCode: 126, length: 1}), failWith(1002)}},
		{"unmasked-text", []step{send(rawFrame{fin: true, op: opTxt, payload: []byte("hello"), unmasked: true}), failWith(1002)}},
		{"unmasked-empty-ping", []step{send(rawFrame{fin: true, op: opPng, unmasked: true}), failWith(1002)}},
		{"unmasked-after-valid", []step{send(fText("ok"), rawFrame{fin: true, op: opTxt, payload: []byte("x"), unmasked: true}), want(evText("ok"), evClose(1002))}},
		{"unmasked-continuation", []step{send(frag(opTxt, false, []byte("a")), rawFrame{fin: true, op: opCont, payload: []byte("b"), unmasked: true}), failWith(1002)}},
	}
	runCases(t, ts.addr, "", cases)
}

func TestConformanceReadLimit(t *testing.T) {
	t.Parallel()
	opts := echoOpts()
	opts.ReadLimit = 1024
	ts := startServer(t, opts, nil)
	cases := []rawCase{
		{"at-limit", []step{send(fBin(pattern(1024))), want(evMsg(opBin, pattern(1024)))}},
		{"one-frame-over", []step{send(fBin(pattern(1025))), failWith(1009)}},
		{"fragments-over", []step{send(frag(opBin, false, pattern(600)), frag(opCont, true, pattern(600))), failWith(1009)}},
		{"claimed-length-over", []step{send(rawFrame{fin: true, op: opBin, lenCode: 127, length: 1 << 40}), failWith(1009)}},
		// A frame claiming 2^63-1 bytes after a first fragment: the sum
		// must not overflow into a small number.
		{"continuation-claims-2^63-1", []step{send(frag(opBin, false, pattern(10)), rawFrame{op: opCont, fin: true, lenCode: 127, length: 1<<63 - 1}), failWith(1009)}},
		{"many-fragments-over", []step{send(fragments(opTxt, pattern(2000), 100)...), failWith(1009)}},
	}
	runCases(t, ts.addr, "", cases)
}

// The frames a client sends right behind its handshake request reach the
// server (net/http buffered them before the hijack).
func TestConformanceFramesBehindRequest(t *testing.T) {
	t.Parallel()
	ts := startServer(t, echoOpts(), nil)
	rc := dialRaw(t, ts.addr, "", encodeAll(fText("early"), fPing("early ping"), fBin(randomBytes(3, 5000)))...)
	rc.expect(evText("early"), evPong("early ping"), evMsg(opBin, randomBytes(3, 5000)))
	rc.closeHandshake()
}

// deflateOffers are the permessage-deflate offers of the Autobahn 12.x and
// 13.x cases and more: every parameter, every window size, and lists
// whose first offers must be declined.
func deflateOffers() [][]string {
	offers := [][]string{
		{"permessage-deflate"},
		{"permessage-deflate; client_no_context_takeover"},
		{"permessage-deflate; server_no_context_takeover"},
		{"permessage-deflate; client_no_context_takeover; server_no_context_takeover"},
		{"permessage-deflate; client_max_window_bits"},
		{"permessage-deflate; client_no_context_takeover; client_max_window_bits"},
		{`permessage-deflate; server_max_window_bits="10"`},
		{"Permessage-Deflate; Server_No_Context_Takeover"},
		// First offers unacceptable: the first acceptable one is taken.
		{"permessage-deflate; server_max_window_bits=7, permessage-deflate; client_no_context_takeover"},
		{"permessage-deflate; unknown_param, permessage-deflate; server_max_window_bits=9"},
		{"x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=16, permessage-deflate"},
		{"permessage-deflate; server_max_window_bits", "permessage-deflate; client_max_window_bits=12"},
		{"permessage-deflate; server_no_context_takeover; server_no_context_takeover, permessage-deflate"},
	}
	for bits := 8; bits <= 15; bits++ {
		offers = append(offers,
			[]string{fmt.Sprintf("permessage-deflate; client_max_window_bits=%d", bits)},
			[]string{fmt.Sprintf("permessage-deflate; server_max_window_bits=%d", bits)},
			// As Autobahn 13.x builds them.
			[]string{fmt.Sprintf("permessage-deflate; client_no_context_takeover; client_max_window_bits; server_no_context_takeover; server_max_window_bits=%d", bits)},
			[]string{fmt.Sprintf("permessage-deflate; client_max_window_bits; server_max_window_bits=%d", bits)},
		)
	}
	return offers
}

// Case families 12 and 13: compressed echo for every offer, many sizes,
// in one frame and fragmented, checking each server message against the
// window the server agreed to.
func TestConformance12And13Deflate(t *testing.T) {
	t.Parallel()
	ts := startServer(t, echoOpts(), nil)
	sizes := []int{0, 16, 64, 127, 128, 256, 257, 1024, 4096, 8192, 16384, 32768, 65536, 131072}
	for _, offer := range deflateOffers() {
		t.Run(strings.Join(offer, " | "), func(t *testing.T) {
			t.Parallel()
			rc := dialRawDeflate(t, ts.addr, offer...)
			if rc.pmd == nil {
				t.Fatalf("offer %q declined", offer)
			}
			for i, n := range sizes {
				text := pattern(n)
				bin := randomBytes(uint64(n), n)
				// Binary halves: random, then repetitive, so that the
				// server's compressor has something to refer back to.
				copy(bin[n/2:], bytes.Repeat([]byte("chatd!"), n/12+1))
				for _, frag := range []int{1 << 30, 1000, 100} {
					for _, m := range []struct {
						op byte
						p  []byte
					}{{opTxt, text}, {opBin, bin}} {
						rc.send(rc.compressedFrames(m.op, m.p, frag)...)
						if i%3 == 0 {
							// Uncompressed messages are allowed too.
							rc.send(rawFrame{fin: true, op: m.op, payload: m.p})
							rc.expect(evMsg(m.op, m.p))
						}
						rc.expect(evMsg(m.op, m.p))
					}
				}
			}
			if rc.pmd.messages == 0 {
				t.Fatal("the server compressed nothing")
			}
			if rc.pmd.serverBits < 15 && rc.pmd.maxDist == 0 {
				t.Logf("server used no back-references at all (window %d)", rc.pmd.serverBits)
			}
			rc.closeHandshake()
		})
	}
}

// Offers the server must decline: the connection works uncompressed, and
// RSV1 then fails it.
func TestConformanceDeflateDeclined(t *testing.T) {
	t.Parallel()
	ts := startServer(t, echoOpts(), nil)
	for _, offer := range []string{
		"permessage-deflate; server_max_window_bits",
		"permessage-deflate; server_max_window_bits=16",
		"permessage-deflate; server_max_window_bits=08",
		"permessage-deflate; server_max_window_bits=7",
		"permessage-deflate; client_max_window_bits=7",
		"permessage-deflate; client_max_window_bits=0x0f",
		"permessage-deflate; server_no_context_takeover=1",
		"permessage-deflate; client_no_context_takeover=true",
		"permessage-deflate; client_no_context_takeover; client_no_context_takeover",
		"permessage-deflate; mystery",
		"permessage-deflate; server_max_window_bits=10; server_max_window_bits=11",
		"permessage-deflate;",
		"deflate-frame",
		`permessage-deflate; server_max_window_bits="1 0"`,
	} {
		t.Run(offer, func(t *testing.T) {
			rc := dialRawDeflate(t, ts.addr, offer)
			if rc.pmd != nil {
				t.Fatalf("offer %q accepted: %q", offer, rc.resp.Header.Values("Sec-WebSocket-Extensions"))
			}
			rc.send(fText("plain"))
			rc.expect(evText("plain"))
			rc.send(fText("x").withRSV(4))
			rc.expectClose(1002)
		})
	}
	t.Run("compression-disabled", func(t *testing.T) {
		opts := echoOpts()
		opts.Compression = false
		ts := startServer(t, opts, nil)
		rc := dialRawDeflate(t, ts.addr, "permessage-deflate")
		if rc.pmd != nil {
			t.Fatal("compression negotiated although disabled")
		}
		rc.send(fBin([]byte{0}).withRSV(4))
		rc.expectClose(1002)
	})
}

// Errors and edge cases of compressed messages.
func TestConformanceDeflateErrors(t *testing.T) {
	t.Parallel()
	opts := echoOpts()
	opts.ReadLimit = 1 << 20
	ts := startServer(t, opts, nil)
	compress := func(p []byte, final bool) []byte {
		var b bytes.Buffer
		fw, _ := flate.NewWriter(&b, flate.BestSpeed)
		fw.Write(p)
		if final {
			fw.Close()
			return b.Bytes()
		}
		fw.Flush()
		return bytes.TrimSuffix(b.Bytes(), []byte{0, 0, 0xff, 0xff})
	}
	zeros := compress(make([]byte, 10<<20), false) // 10 MiB in a few KiB
	if len(zeros) > 64<<10 {
		t.Fatalf("bomb is %d bytes", len(zeros))
	}
	msg := pattern(5000)
	withFinal := compress(msg, true)
	z := func(op byte, p []byte) rawFrame { return rawFrame{fin: true, op: op, rsv: 4, payload: p} }
	zfrags := func(op byte, p []byte, size int) []rawFrame {
		frames := fragments(op, p, size)
		frames[0].rsv = 4
		return frames
	}
	cases := []rawCase{
		{"invalid-block-type", []step{send(z(opBin, []byte{0xff, 0xff, 0xff})), failWith(1007)}},
		{"stored-length-mismatch", []step{send(z(opBin, []byte{0x00, 0x05, 0x00, 0x00, 0x00, 'a'})), failWith(1007)}},
		{"garbage-after-final-block", []step{send(z(opBin, append(bytes.Clone(withFinal), 1, 2, 3))), failWith(1007)}},
		{"invalid-utf8-inside", []step{send(z(opTxt, compress([]byte(kosme+"\xed\xa0\x80edited"), false))), failWith(1007)}},
		{"truncated-utf8-inside", []step{send(z(opTxt, compress([]byte(kosme+"\xce"), false))), failWith(1007)}},
		{"bomb-over-read-limit", []step{send(z(opBin, zeros)), failWith(1009)}},
		{"bomb-fragmented", []step{send(zfrags(opBin, zeros, 512)...), failWith(1009)}},
		{"rsv1-on-continuation", []step{send(frag(opTxt, false, []byte("a")), frag(opCont, true, []byte("b")).withRSV(4)), failWith(1002)}},
		{"rsv1-on-second-fragment-of-compressed", []step{send(rawFrame{op: opBin, rsv: 4, payload: compress(msg, false)[:10]}, frag(opCont, true, compress(msg, false)[10:]).withRSV(4)), failWith(1002)}},
		{"rsv1-on-ping", []step{send(fPing("x").withRSV(4)), failWith(1002)}},
		{"rsv1-on-close", []step{send(fClose(1000, "").withRSV(4)), failWith(1002)}},
		{"rsv1-on-pong", []step{send(fPong("").withRSV(4)), failWith(1002)}},
		{"rsv2-with-deflate", []step{send(z(opBin, compress(msg, false)).withRSV(6)), failWith(1002)}},
		// A stream ending with a final block (RFC 7692 §7.2.3.3) is fine,
		// also when empty fragments follow it.
		{"final-block", []step{send(z(opTxt, withFinal)), want(evMsg(opTxt, msg))}},
		{"final-block-then-empty-fragment", []step{send(rawFrame{op: opTxt, rsv: 4, payload: withFinal}, frag(opCont, true, nil)), want(evMsg(opTxt, msg))}},
		{"empty-compressed-payload", []step{send(z(opTxt, nil)), want(evText(""))}},
		{"empty-message-compressed", []step{send(z(opTxt, compress(nil, false))), want(evText(""))}},
		{"empty-first-fragment", []step{send(rawFrame{op: opBin, rsv: 4}, frag(opCont, false, nil), frag(opCont, true, compress(msg, false))), want(evMsg(opBin, msg))}},
		{"ping-inside-compressed", []step{send(append([]rawFrame{{op: opBin, rsv: 4, payload: compress(msg, false)[:50]}, fPing("inside")}, frag(opCont, true, compress(msg, false)[50:]))...), want(evPong("inside"), evMsg(opBin, msg))}},
		{"octetwise-compressed", []step{chopped(1, z(opTxt, compress(msg[:300], false))), want(evMsg(opTxt, msg[:300]))}},
	}
	runCases(t, ts.addr, "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n", cases)
}

// A client compressing with context takeover (it did not ask for
// client_no_context_takeover, but the server imposes it, so the client must
// not refer back: the raw client honours the answer) and a server that
// keeps no context: every server message decompresses on its own.
func TestConformanceDeflateNoContext(t *testing.T) {
	t.Parallel()
	ts := startServer(t, echoOpts(), nil)
	rc := dialRawDeflate(t, ts.addr, "permessage-deflate")
	if !rc.pmd.serverNoCtx || !rc.pmd.clientNoCtx {
		t.Fatalf("want both no_context_takeover in the answer, got %q", rc.resp.Header.Values("Sec-WebSocket-Extensions"))
	}
	for range 5 {
		rc.send(rc.compressedFrames(opTxt, pattern(3000), 1<<20)...)
		rc.expect(evMsg(opTxt, pattern(3000)))
	}
	rc.closeHandshake()
}

// The server's deflate response for each window size: the frames it sends
// must fit in 2^N, which the test inflater checks; here with messages
// larger than the window, of highly repetitive content that a compressor
// with a full window would cover with long back-references.
func TestConformanceDeflateWindow(t *testing.T) {
	t.Parallel()
	ts := startServer(t, echoOpts(), nil)
	for bits := 8; bits <= 15; bits++ {
		t.Run(fmt.Sprint(bits), func(t *testing.T) {
			rc := dialRawDeflate(t, ts.addr, fmt.Sprintf("permessage-deflate; server_max_window_bits=%d", bits))
			if rc.pmd.serverBits != bits {
				t.Fatalf("server_max_window_bits %d answered as %d", bits, rc.pmd.serverBits)
			}
			for _, n := range []int{1<<bits - 1, 1 << bits, 1<<bits + 1, 3 << bits, 100000} {
				// Distinct random blocks of 64 bytes, each repeated at a
				// distance: full-window compression would refer back far.
				msg := make([]byte, 0, n)
				block := randomBytes(uint64(bits), 1<<bits)
				for len(msg) < n {
					msg = append(msg, block[:min(len(block), n-len(msg))]...)
				}
				rc.send(fBin(msg))
				rc.expect(evMsg(opBin, msg))
			}
			if rc.pmd.maxDist > 1<<bits {
				t.Fatalf("distance %d beyond window %d", rc.pmd.maxDist, 1<<bits)
			}
			rc.closeHandshake()
		})
	}
}
