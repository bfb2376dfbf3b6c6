package ws

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

// The raw test client: a WebSocket client written from RFC 6455 and RFC
// 7692 for the tests, independent of the package's code, that builds frames
// byte by byte (malformed ones included) and checks every frame the server
// sends, as the Autobahn fuzzing client does.

const (
	rfcKey    = "dGhlIHNhbXBsZSBub25jZQ==" // RFC 6455 §1.3
	rfcAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

	opCont, opTxt, opBin, opCls, opPng, opPog = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
)

// rawFrame is a frame as written by the test client or read from the
// server.
type rawFrame struct {
	fin     bool
	rsv     byte // RSV1<<2 | RSV2<<1 | RSV3
	op      byte
	payload []byte
	// For malformed frames: send the payload unmasked, or force the
	// length encoding (lenCode 126 or 127) and the length written.
	unmasked bool
	lenCode  byte
	length   uint64
}

func fText(s string) rawFrame     { return rawFrame{fin: true, op: opTxt, payload: []byte(s)} }
func fBin(b []byte) rawFrame      { return rawFrame{fin: true, op: opBin, payload: b} }
func fPing(s string) rawFrame     { return rawFrame{fin: true, op: opPng, payload: []byte(s)} }
func fPong(s string) rawFrame     { return rawFrame{fin: true, op: opPog, payload: []byte(s)} }
func fCloseRaw(p []byte) rawFrame { return rawFrame{fin: true, op: opCls, payload: p} }

// fClose is a close frame with code and reason; code 0 means no payload.
func fClose(code int, reason string) rawFrame {
	if code == 0 {
		return fCloseRaw(nil)
	}
	return fCloseRaw(append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...))
}

// frag is one frame of a fragmented message.
func frag(op byte, fin bool, p []byte) rawFrame { return rawFrame{fin: fin, op: op, payload: p} }

// withRSV returns f with the RSV bits set to rsv.
func (f rawFrame) withRSV(rsv byte) rawFrame { f.rsv = rsv; return f }

// fragments splits a message into frames of at most size bytes (one empty
// frame for an empty message).
func fragments(op byte, p []byte, size int) []rawFrame {
	var out []rawFrame
	for first := true; first || len(p) > 0; first = false {
		n := min(size, len(p))
		f := frag(opCont, n == len(p), p[:n])
		if first {
			f.op = op
		}
		out = append(out, f)
		p = p[n:]
	}
	return out
}

// encode returns the frame's wire bytes, masked with a random key unless
// unmasked is set.
func (f rawFrame) encode() []byte {
	b0 := f.op&0x0F | (f.rsv&7)<<4
	if f.fin {
		b0 |= 0x80
	}
	var b1 byte
	if !f.unmasked {
		b1 = 0x80
	}
	n := uint64(len(f.payload))
	code := f.lenCode
	if code != 0 {
		n = f.length
	} else if n > 0xFFFF {
		code = 127
	} else if n >= 126 {
		code = 126
	}
	out := make([]byte, 0, 14+len(f.payload))
	switch code {
	case 126:
		out = binary.BigEndian.AppendUint16(append(out, b0, b1|126), uint16(n))
	case 127:
		out = binary.BigEndian.AppendUint64(append(out, b0, b1|127), n)
	default:
		out = append(out, b0, b1|byte(n))
	}
	if f.unmasked {
		return append(out, f.payload...)
	}
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], rand.Uint32()|1) // the global source is safe for parallel tests
	out = append(out, key[:]...)
	start := len(out)
	out = append(out, f.payload...)
	for i := range f.payload {
		out[start+i] ^= key[i&3]
	}
	return out
}

func encodeAll(frames ...rawFrame) []byte {
	var b []byte
	for _, f := range frames {
		b = append(b, f.encode()...)
	}
	return b
}

// rawConn is the raw client's connection.
type rawConn struct {
	t    testing.TB
	nc   net.Conn
	br   *bufio.Reader
	resp *http.Response
	pmd  *pmdClient // when permessage-deflate was negotiated
}

// handshakeRequest is an upgrade request with the RFC's sample key and the
// given extra header lines ("Name: value\r\n" each).
func handshakeRequest(host, extra string) string {
	return "GET / HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + rfcKey + "\r\nSec-WebSocket-Version: 13\r\n" + extra + "\r\n"
}

// dialRaw connects to addr, sends the handshake with the extra header
// lines, followed immediately by early (frames that ride in the same
// write), and checks the 101 answer.
func dialRaw(t testing.TB, addr, extra string, early ...byte) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	rc := &rawConn{t: t, nc: nc, br: bufio.NewReaderSize(nc, 64<<10)}
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := nc.Write(append([]byte(handshakeRequest(addr, extra)), early...)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		t.Fatalf("reading handshake response: %v", err)
	}
	nc.SetDeadline(time.Time{})
	rc.resp = resp
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("handshake answered %s: %s", resp.Status, body)
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != rfcAccept {
		t.Fatalf("Sec-WebSocket-Accept %q, want %q", got, rfcAccept)
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") || !strings.EqualFold(resp.Header.Get("Connection"), "Upgrade") {
		t.Fatalf("bad Upgrade/Connection in response: %v", resp.Header)
	}
	var offers []string
	for line := range strings.SplitSeq(extra, "\r\n") {
		if name, value, ok := strings.Cut(line, ":"); ok && strings.EqualFold(name, "Sec-WebSocket-Extensions") {
			offers = append(offers, strings.TrimSpace(value))
		}
	}
	pmd, err := parseResponseExtension(offers, resp.Header.Values("Sec-WebSocket-Extensions"))
	if err != nil {
		t.Fatal(err)
	}
	rc.pmd = pmd
	return rc
}

func (rc *rawConn) write(b []byte) {
	rc.t.Helper()
	rc.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := rc.nc.Write(b); err != nil {
		rc.t.Fatalf("write: %v", err)
	}
}

// send writes the frames with one write.
func (rc *rawConn) send(frames ...rawFrame) {
	rc.t.Helper()
	rc.write(encodeAll(frames...))
}

// sendChopped writes the frames' bytes in writes of chop bytes.
func (rc *rawConn) sendChopped(chop int, frames ...rawFrame) {
	rc.t.Helper()
	b := encodeAll(frames...)
	for len(b) > 0 {
		n := min(chop, len(b))
		rc.write(b[:n])
		b = b[n:]
	}
}

// sendQuiet writes and ignores errors: for bytes sent after the server may
// already have failed the connection.
func (rc *rawConn) sendQuiet(frames ...rawFrame) {
	rc.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	rc.nc.Write(encodeAll(frames...))
}

// readFrame reads one frame from the server and checks what RFC 6455 asks
// of any server frame: unmasked, minimal length, no reserved opcode,
// control frames short and unfragmented.
func (rc *rawConn) readFrame(timeout time.Duration) (rawFrame, error) {
	rc.nc.SetReadDeadline(time.Now().Add(timeout))
	var h [2]byte
	if _, err := io.ReadFull(rc.br, h[:]); err != nil {
		return rawFrame{}, err
	}
	f := rawFrame{fin: h[0]&0x80 != 0, rsv: h[0] >> 4 & 7, op: h[0] & 0x0F}
	if h[1]&0x80 != 0 {
		return f, errors.New("server frame is masked")
	}
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(rc.br, b[:]); err != nil {
			return f, err
		}
		if n = uint64(binary.BigEndian.Uint16(b[:])); n < 126 {
			return f, fmt.Errorf("length %d not minimally encoded", n)
		}
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(rc.br, b[:]); err != nil {
			return f, err
		}
		if n = binary.BigEndian.Uint64(b[:]); n <= 0xFFFF || n>>63 != 0 {
			return f, fmt.Errorf("bad 64-bit length %d", n)
		}
	}
	if n > 64<<20 {
		return f, fmt.Errorf("frame of %d bytes", n)
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(rc.br, f.payload); err != nil {
		return f, err
	}
	switch {
	case f.op >= 3 && f.op <= 7 || f.op > 0xA:
		return f, fmt.Errorf("server sent reserved opcode %#x", f.op)
	case f.op >= 8 && (!f.fin || n > 125):
		return f, fmt.Errorf("bad control frame (fin %v, %d bytes)", f.fin, n)
	case f.rsv&3 != 0:
		return f, fmt.Errorf("server set RSV2/RSV3")
	}
	return f, nil
}

// event is what the server did, one message or control frame.
type event struct {
	kind  string // "message", "pong", "close"
	op    byte
	data  []byte
	codes []int // for "close": acceptable codes, 0 for an empty close frame
}

func evMsg(op byte, p []byte) event { return event{kind: "message", op: op, data: p} }
func evText(s string) event         { return evMsg(opTxt, []byte(s)) }
func evPong(s string) event         { return event{kind: "pong", data: []byte(s)} }
func evClose(codes ...int) event    { return event{kind: "close", codes: codes} }

func (e event) String() string {
	switch e.kind {
	case "close":
		if len(e.data) >= 2 {
			return fmt.Sprintf("close %d %q", binary.BigEndian.Uint16(e.data), e.data[2:])
		}
		if e.codes != nil {
			return fmt.Sprintf("close %v", e.codes)
		}
		return "close (empty)"
	case "message":
		return fmt.Sprintf("message op=%d %d bytes %q", e.op, len(e.data), abbrev(e.data))
	}
	return fmt.Sprintf("%s %q", e.kind, abbrev(e.data))
}

func abbrev(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

// next reads the server's next event: a whole message (reassembled and,
// when compressed, inflated), a pong or a close. Pings are answered.
func (rc *rawConn) next(timeout time.Duration) (event, error) {
	var msg *event
	compressed := false
	for {
		f, err := rc.readFrame(timeout)
		if err != nil {
			return event{}, err
		}
		if f.rsv&4 != 0 && (rc.pmd == nil || f.op == opCont || f.op >= 8) {
			return event{}, fmt.Errorf("server set RSV1 on op %d (deflate %v)", f.op, rc.pmd != nil)
		}
		switch f.op {
		case opPng:
			rc.sendQuiet(fPong(string(f.payload)))
			continue
		case opPog:
			return event{kind: "pong", data: f.payload}, nil
		case opCls:
			if len(f.payload) == 1 {
				return event{}, errors.New("server sent a 1-byte close payload")
			}
			if len(f.payload) >= 2 {
				code := StatusCode(binary.BigEndian.Uint16(f.payload))
				if !validWireCode(code) {
					return event{}, fmt.Errorf("server sent close code %d", code)
				}
				if !utf8.Valid(f.payload[2:]) {
					return event{}, errors.New("server sent a close reason that is not UTF-8")
				}
			}
			return event{kind: "close", data: f.payload}, nil
		case opTxt, opBin:
			if msg != nil {
				return event{}, errors.New("server started a message inside another")
			}
			msg = &event{kind: "message", op: f.op}
			compressed = f.rsv&4 != 0
		case opCont:
			if msg == nil {
				return event{}, errors.New("server sent a continuation with no message")
			}
		}
		msg.data = append(msg.data, f.payload...)
		if !f.fin {
			continue
		}
		if compressed {
			if msg.data, err = rc.pmd.decompress(msg.data); err != nil {
				return event{}, err
			}
		}
		if msg.op == opTxt && !utf8.Valid(msg.data) {
			return event{}, errors.New("server sent a text message that is not UTF-8")
		}
		if msg.data == nil {
			msg.data = []byte{}
		}
		return *msg, nil
	}
}

// expect reads events and compares them with want, in order.
func (rc *rawConn) expect(want ...event) {
	rc.t.Helper()
	for i, w := range want {
		got, err := rc.next(10 * time.Second)
		if err != nil {
			rc.t.Fatalf("event %d: want %v, got error %v", i, w, err)
		}
		if got.kind != w.kind {
			rc.t.Fatalf("event %d: want %v, got %v", i, w, got)
		}
		switch w.kind {
		case "close":
			code := 0
			if len(got.data) >= 2 {
				code = int(binary.BigEndian.Uint16(got.data))
			}
			if !slices.Contains(w.codes, code) {
				rc.t.Fatalf("event %d: want %v, got %v", i, w, got)
			}
		case "message":
			if got.op != w.op || !bytes.Equal(got.data, w.data) {
				rc.t.Fatalf("event %d: want %v, got %v", i, w, got)
			}
		default:
			if !bytes.Equal(got.data, w.data) {
				rc.t.Fatalf("event %d: want %v, got %v", i, w, got)
			}
		}
	}
}

// expectEOF checks that the server closes the TCP connection (after its
// close frame) and sends nothing more.
func (rc *rawConn) expectEOF() {
	rc.t.Helper()
	f, err := rc.readFrame(5 * time.Second)
	switch {
	case err == nil:
		rc.t.Fatalf("frame after close: op %d %q", f.op, abbrev(f.payload))
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
	default:
		rc.t.Fatalf("want the server to close the connection, got %v", err)
	}
	rc.nc.Close()
}

// expectClose expects the server to fail the connection with one of codes.
func (rc *rawConn) expectClose(codes ...int) {
	rc.t.Helper()
	rc.expect(evClose(codes...))
	rc.expectEOF()
}

// closeHandshake does the closing handshake as the initiator.
func (rc *rawConn) closeHandshake() {
	rc.t.Helper()
	rc.send(fClose(1000, ""))
	rc.expectClose(1000)
}

// expectQuiet checks that the server sends nothing for d.
func (rc *rawConn) expectQuiet(d time.Duration) {
	rc.t.Helper()
	if f, err := rc.readFrame(d); err == nil {
		rc.t.Fatalf("unexpected frame op %d %q", f.op, abbrev(f.payload))
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		rc.t.Fatalf("unexpected error %v", err)
	}
}

// pmdClient is the raw client's permessage-deflate state, set up from the
// server's response.
type pmdClient struct {
	serverNoCtx, clientNoCtx bool
	serverBits, clientBits   int // 15 when absent
	fw                       *flate.Writer
	out                      bytes.Buffer
	inf                      inflater
	maxDist                  int // largest distance seen in server messages
	messages                 int // compressed messages received
}

// parseResponseExtension checks the server's Sec-WebSocket-Extensions
// against the offer (RFC 7692 §5, §7.1): one permessage-deflate element,
// known parameters at most once with valid values, the offered
// server_no_context_takeover acknowledged, server_max_window_bits no
// larger than offered, client_max_window_bits only when offered.
func parseResponseExtension(offer, resp []string) (*pmdClient, error) {
	if len(resp) == 0 {
		return nil, nil
	}
	respExts, ok := parseExtensions(resp)
	if !ok || len(respExts) != 1 || respExts[0].name != "permessage-deflate" {
		return nil, fmt.Errorf("response extensions %q", resp)
	}
	// Which offer was accepted is not said; it must fit one of them.
	offers, _ := parseExtensions(offer)
	var errs []error
	for _, o := range offers {
		if o.name != "permessage-deflate" {
			continue
		}
		p, err := checkDeflateResponse(o, respExts[0])
		if err == nil {
			return p, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("response %q fits no offer: %w", resp, errors.Join(errs...))
}

func checkDeflateResponse(offer, resp extension) (*pmdClient, error) {
	op := map[string]extensionParam{}
	for _, p := range offer.params {
		op[p.name] = p
	}
	p := &pmdClient{serverBits: 15, clientBits: 15}
	seen := map[string]bool{}
	for _, prm := range resp.params {
		if seen[prm.name] {
			return nil, fmt.Errorf("%s repeated", prm.name)
		}
		seen[prm.name] = true
		switch prm.name {
		case "server_no_context_takeover":
			if prm.hasValue {
				return nil, fmt.Errorf("%s has a value", prm.name)
			}
			p.serverNoCtx = true
		case "client_no_context_takeover":
			if prm.hasValue {
				return nil, fmt.Errorf("%s has a value", prm.name)
			}
			p.clientNoCtx = true
		case "server_max_window_bits":
			n, err := strconv.Atoi(prm.value)
			if !prm.hasValue || err != nil || n < 8 || n > 15 || prm.value[0] == '0' {
				return nil, fmt.Errorf("server_max_window_bits=%q", prm.value)
			}
			if o, ok := op[prm.name]; ok {
				if on, _ := strconv.Atoi(o.value); n > on {
					return nil, fmt.Errorf("server_max_window_bits=%d larger than offered %d", n, on)
				}
			}
			p.serverBits = n
		case "client_max_window_bits":
			o, offered := op[prm.name]
			if !offered {
				return nil, errors.New("client_max_window_bits answered but not offered")
			}
			n, err := strconv.Atoi(prm.value)
			if !prm.hasValue || err != nil || n < 8 || n > 15 || prm.value[0] == '0' {
				return nil, fmt.Errorf("client_max_window_bits=%q", prm.value)
			}
			if o.hasValue {
				if on, _ := strconv.Atoi(o.value); n > on {
					return nil, fmt.Errorf("client_max_window_bits=%d larger than offered %d", n, on)
				}
			}
			p.clientBits = n
		default:
			return nil, fmt.Errorf("unknown parameter %s", prm.name)
		}
	}
	if _, ok := op["server_no_context_takeover"]; ok && !p.serverNoCtx {
		return nil, errors.New("offered server_no_context_takeover not acknowledged")
	}
	if o, ok := op["server_max_window_bits"]; ok && !seen["server_max_window_bits"] {
		return nil, fmt.Errorf("offered server_max_window_bits=%s not acknowledged", o.value)
	}
	return p, nil
}

// compress returns the permessage-deflate payload of msg (RFC 7692 §7.2.1),
// keeping the compression context between messages unless the server
// asked for client_no_context_takeover.
func (p *pmdClient) compress(msg []byte) []byte {
	level := flate.DefaultCompression
	if p.clientBits < 15 && len(msg) > 1<<p.clientBits {
		level = flate.HuffmanOnly // never refers back beyond the window
	}
	if p.fw == nil || p.clientNoCtx || p.clientBits < 15 {
		p.fw, _ = flate.NewWriter(&p.out, level)
	}
	p.out.Reset()
	p.fw.Write(msg)
	p.fw.Flush()
	b := bytes.Clone(p.out.Bytes())
	if !bytes.HasSuffix(b, []byte{0, 0, 0xff, 0xff}) {
		panic("flush did not end with an empty stored block")
	}
	return b[:len(b)-4]
}

// decompress inflates a server message with the window the server agreed
// to, failing when a distance exceeds it, and checks the result against
// compress/flate.
func (p *pmdClient) decompress(payload []byte) ([]byte, error) {
	in := append(bytes.Clone(payload), 0, 0, 0xff, 0xff)
	if p.serverNoCtx {
		p.inf.reset()
	}
	dict := bytes.Clone(p.inf.hist)
	out, err := p.inf.inflate(in)
	if err != nil {
		return nil, fmt.Errorf("server message does not inflate: %w", err)
	}
	p.messages++
	p.maxDist = max(p.maxDist, p.inf.maxDist)
	if limit := 1 << p.serverBits; p.inf.maxDist > limit {
		return nil, fmt.Errorf("server message refers back %d bytes, beyond its window of %d (server_max_window_bits=%d)", p.inf.maxDist, limit, p.serverBits)
	}
	ref, err := io.ReadAll(flate.NewReaderDict(io.MultiReader(bytes.NewReader(in), bytes.NewReader([]byte{1, 0, 0, 0xff, 0xff})), dict))
	if err != nil || !bytes.Equal(ref, out) {
		return nil, fmt.Errorf("compress/flate disagrees with the test inflater: %v", err)
	}
	return out, nil
}

// dialRawDeflate connects offering the given Sec-WebSocket-Extensions
// values and sets up compression from the answer.
func dialRawDeflate(t testing.TB, addr string, offer ...string) *rawConn {
	t.Helper()
	var extra string
	for _, o := range offer {
		extra += "Sec-WebSocket-Extensions: " + o + "\r\n"
	}
	return dialRaw(t, addr, extra)
}

// compressedFrames returns msg compressed and split into frames of size
// bytes (RSV1 on the first only).
func (rc *rawConn) compressedFrames(op byte, msg []byte, size int) []rawFrame {
	frames := fragments(op, rc.pmd.compress(msg), size)
	frames[0].rsv = 4
	return frames
}
