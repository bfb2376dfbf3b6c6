package conformance_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/chatd/chatd/internal/ws"
)

// TestFrameCloses checks the frames that end a connection (PROTOCOL.md §2
// and the close codes of §6): binary 1003, invalid UTF-8 1007, over the
// read limit 1009, RFC 6455 violations 1002, and the answer 1000 to a
// client's close.
func TestFrameCloses(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		for _, n := range tp.each() {
			t.Run(n.id+"/binary message closes with 1003", func(t *testing.T) {
				c := connect(t, n, fresh("fr"))
				if err := c.conn.WriteMessage(ws.Binary, []byte(`{"type":"ping","ref":"b"}`)); err != nil {
					t.Fatal(err)
				}
				c.wantClose(ws.StatusUnsupportedData, wait)
				c.none("pong to a binary message", 0, isType("pong"))
			})
			t.Run(n.id+"/invalid UTF-8 closes with 1007", func(t *testing.T) {
				c := connect(t, n, fresh("fr"))
				c.writeRaw([]byte("{\"type\":\"ping\",\"ref\":\"\xff\xfe\"}"))
				c.wantClose(ws.StatusInvalidPayload, wait)
			})
			t.Run(n.id+"/invalid UTF-8 split over fragments closes with 1007", func(t *testing.T) {
				rc := openRaw(t, n, fresh("fr"))
				rc.writeFrame(false, 0, opText, []byte("{\"type\":\"ping\",\"ref\":\"\xe2"), true)
				rc.writeFrame(true, 0, opCont, []byte("\x28\xa1\"}"), true)
				if code := rc.readClose(wait); code != ws.StatusInvalidPayload {
					t.Errorf("close %v, want 1007", code)
				}
			})
			t.Run(n.id+"/a message of exactly the read limit is served", func(t *testing.T) {
				c := connect(t, n, fresh("fr"))
				c.writeRaw(padded(`{"type":"ping","ref":"big","pad":"`, `"}`, 64<<10))
				c.await("pong to a 64 KiB message", func(e event) bool { return e.typ() == "pong" && e.str("ref") == "big" })
			})
			t.Run(n.id+"/a message over the read limit closes with 1009", func(t *testing.T) {
				c := connect(t, n, fresh("fr"))
				c.writeRaw(padded(`{"type":"ping","ref":"big","pad":"`, `"}`, 64<<10+1))
				c.wantClose(ws.StatusMessageTooBig, wait)
			})
			t.Run(n.id+"/over the read limit in fragments closes with 1009", func(t *testing.T) {
				rc := openRaw(t, n, fresh("fr"))
				chunk := bytes.Repeat([]byte("x"), 16<<10)
				rc.writeFrame(false, 0, opText, []byte(`{"type":"ping","pad":"`), true)
				for range 4 {
					rc.writeFrame(false, 0, opCont, chunk, true)
				}
				rc.writeFrame(true, 0, opCont, []byte(`"}`), true)
				if code := rc.readClose(wait); code != ws.StatusMessageTooBig {
					t.Errorf("close %v, want 1009", code)
				}
			})
			t.Run(n.id+"/a fragmented command with a ping between fragments", func(t *testing.T) {
				rc := openRaw(t, n, fresh("fr"))
				rc.writeFrame(false, 0, opText, []byte(`{"type":"pi`), true)
				rc.writeFrame(true, 0, opPing, []byte("hello"), true)
				rc.writeFrame(true, 0, opCont, []byte(`ng","ref":"frag"}`), true)
				var pong, reply bool
				for !pong || !reply {
					op, p, err := rc.readFrame(wait)
					if err != nil {
						t.Fatalf("pong %v, reply %v: %v", pong, reply, err)
					}
					switch {
					case op == opPong && string(p) == "hello":
						pong = true
					case op == opText && strings.Contains(string(p), `"pong"`) && strings.Contains(string(p), `"frag"`):
						reply = true
					default:
						t.Fatalf("unexpected frame op %d %q", op, p)
					}
				}
			})
			t.Run(n.id+"/fragmented by the ws client", func(t *testing.T) {
				user := fresh("fr")
				c, err := dial(t, n, user, dialOptions{token: token(t, user), fragment: 5})
				if err != nil {
					t.Fatal(err)
				}
				c.ping()
			})
			for _, row := range []struct {
				name  string
				frame func(rc *rawConn)
			}{
				{"unmasked frame", func(rc *rawConn) { rc.writeFrame(true, 0, opText, []byte(`{"type":"ping"}`), false) }},
				{"reserved bit", func(rc *rawConn) { rc.writeFrame(true, 0x20, opText, []byte(`{"type":"ping"}`), true) }},
				{"reserved opcode", func(rc *rawConn) { rc.writeFrame(true, 0, 0x3, []byte(`x`), true) }},
				{"continuation without a start", func(rc *rawConn) { rc.writeFrame(true, 0, opCont, []byte(`{"type":"ping"}`), true) }},
				{"fragmented ping", func(rc *rawConn) { rc.writeFrame(false, 0, opPing, []byte(`x`), true) }},
				{"close code 1005 on the wire", func(rc *rawConn) { rc.writeFrame(true, 0, opClose, closePayload(1005), true) }},
			} {
				t.Run(n.id+"/"+row.name+" closes with 1002", func(t *testing.T) {
					rc := openRaw(t, n, fresh("fr"))
					row.frame(rc)
					if code := rc.readClose(wait); code != ws.StatusProtocolError {
						t.Errorf("close %v, want 1002", code)
					}
				})
			}
			t.Run(n.id+"/a client's close 1000 is answered with 1000", func(t *testing.T) {
				rc := openRaw(t, n, fresh("fr"))
				rc.writeFrame(true, 0, opClose, closePayload(ws.StatusNormalClosure), true)
				if code := rc.readClose(wait); code != ws.StatusNormalClosure {
					t.Errorf("close %v, want 1000", code)
				}
			})
		}
	})
}

// padded returns prefix, x repeated, and suffix, n bytes in all.
func padded(prefix, suffix string, n int) []byte {
	return []byte(prefix + strings.Repeat("x", n-len(prefix)-len(suffix)) + suffix)
}

// TestCompression checks that permessage-deflate is negotiated when offered
// and enabled, and declined, never an error, otherwise (PROTOCOL.md §1).
func TestCompression(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		exchange := func(t *testing.T, tp *topology, want bool) {
			room := fresh("room")
			user := fresh("cz")
			a, err := dial(t, tp.a, user, dialOptions{token: token(t, user), compression: true})
			if err != nil {
				t.Fatal(err)
			}
			b, err := dial(t, tp.b, user, dialOptions{token: token(t, user), compression: true})
			if err != nil {
				t.Fatal(err)
			}
			if a.conn.Compressed() != want || b.conn.Compressed() != want {
				t.Errorf("compressed %v and %v, want %v", a.conn.Compressed(), b.conn.Compressed(), want)
			}
			a.join(room)
			b.join(room)
			text := strings.Repeat("compressible text ", 200)
			sent := a.post(room, text)
			for _, c := range []*client{a, b} {
				m := c.await("message", isMessageID(sent.str("id")))
				if m.str("text") != text {
					t.Errorf("text changed on the way")
				}
			}
		}
		t.Run("offered and enabled", func(t *testing.T) { exchange(t, tp, true) })
		t.Run("offered and disabled", func(t *testing.T) { exchange(t, tp.nodes(t, "-compression=false"), false) })
		t.Run("an unknown extension is declined", func(t *testing.T) {
			user := fresh("cz")
			r := upgrade(tp.a, token(t, user)).set("Sec-WebSocket-Extensions", "x-webkit-unknown; foo=1")
			resp, body, rc := roundTrip(t, tp.a, r)
			checkAccepted(t, resp, body, rc, user)
			if v := resp.Header.Get("Sec-WebSocket-Extensions"); v != "" {
				t.Errorf("Sec-WebSocket-Extensions %q for an unknown extension", v)
			}
		})
		t.Run("an offer with invalid parameters is declined", func(t *testing.T) {
			user := fresh("cz")
			r := upgrade(tp.a, token(t, user)).set("Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits=99")
			resp, body, rc := roundTrip(t, tp.a, r)
			checkAccepted(t, resp, body, rc, user)
			if v := resp.Header.Get("Sec-WebSocket-Extensions"); v != "" {
				t.Errorf("Sec-WebSocket-Extensions %q for an invalid offer", v)
			}
		})
	})
}

// TestCommandFraming checks commands that are not well-formed objects,
// ref handling, and unknown fields (PROTOCOL.md §2, §3; docs/protocol.md
// §2 and §9).
func TestCommandFraming(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		c := connect(t, tp.a, fresh("cf"))
		ref64 := strings.Repeat("r", 64)
		refUTF64 := strings.Repeat("é", 32)
		rows := []struct {
			name string
			raw  string
			typ  string // reply type, or error code after "error:"
			ref  string // the ref the reply must carry; empty: none
		}{
			{"not JSON", `hello`, "error:bad_request", ""},
			{"an empty message", ``, "error:bad_request", ""},
			{"whitespace around the object", " \n{\"type\":\"ping\",\"ref\":\"ws\"}\r\n\t ", "pong", "ws"},
			{"truncated JSON", `{"type":"ping","ref":"t1"`, "error:bad_request", ""},
			{"a JSON array", `[{"type":"ping"}]`, "error:bad_request", ""},
			{"a JSON string", `"ping"`, "error:bad_request", ""},
			{"JSON null", `null`, "error:bad_request", ""},
			{"two objects in one message", `{"type":"ping","ref":"t2"}{"type":"ping","ref":"t3"}`, "error:bad_request", ""},
			{"no type", `{"ref":"t4"}`, "error:bad_request", "t4"},
			{"type null", `{"type":null,"ref":"t5"}`, "error:bad_request", "t5"},
			{"type a number", `{"type":5,"ref":"t6"}`, "error:bad_request", "t6"},
			{"type of another case", `{"type":"PING","ref":"t7"}`, "error:unknown_type", "t7"},
			{"field names are case-sensitive", `{"Type":"ping","ref":"t8"}`, "error:bad_request", "t8"},
			{"unknown type", `{"type":"dance","ref":"t9"}`, "error:unknown_type", "t9"},
			{"unknown type without ref", `{"type":"dance"}`, "error:unknown_type", ""},
			{"server event type as a command", `{"type":"welcome","ref":"t10"}`, "error:unknown_type", "t10"},
			{"ref copied", `{"type":"ping","ref":"t11"}`, "pong", "t11"},
			{"no ref", `{"type":"ping"}`, "pong", ""},
			{"empty ref is no ref", `{"type":"ping","ref":""}`, "pong", ""},
			{"ref null is no ref", `{"type":"ping","ref":null}`, "pong", ""},
			{"ref of 64 bytes", `{"type":"ping","ref":"` + ref64 + `"}`, "pong", ref64},
			{"ref of 64 bytes of UTF-8", `{"type":"ping","ref":"` + refUTF64 + `"}`, "pong", refUTF64},
			{"ref of 65 bytes", `{"type":"ping","ref":"` + ref64 + `x"}`, "error:bad_request", ""},
			{"ref of 66 bytes of UTF-8", `{"type":"ping","ref":"` + refUTF64 + `é"}`, "error:bad_request", ""},
			{"ref a number", `{"type":"ping","ref":7}`, "error:bad_request", ""},
			{"ref an object", `{"type":"ping","ref":{"a":1}}`, "error:bad_request", ""},
			{"unknown fields ignored", `{"type":"ping","ref":"t12","future":{"x":[1,2]},"v":2}`, "pong", "t12"},
			{"a repeated field counts once, the last", `{"type":"ping","ref":"t13","ref":"t14"}`, "pong", "t14"},
			{"unicode escapes", `{"type":"p\u0069ng","ref":"t\u00e9"}`, "pong", "té"},
		}
		for _, row := range rows {
			t.Run(row.name, func(t *testing.T) {
				c.drop()
				c.writeRaw([]byte(row.raw))
				e, ok := c.next(wait)
				if !ok {
					t.Fatalf("no reply (connection: %v)", c.endErr())
				}
				got := e.typ()
				if got == "error" {
					got += ":" + e.str("code")
				}
				if got != row.typ {
					t.Errorf("reply %s, want %s", e, row.typ)
				}
				if e.str("ref") != row.ref || e.has("ref") != (row.ref != "") {
					t.Errorf("reply %s, want ref %q", e, row.ref)
				}
				// The connection stays usable after each of them.
				c.ping()
			})
		}
	})
}

// TestRepliesInOrder checks that replies come in the order of the
// commands (docs/protocol.md §3), from pipelined commands of every kind.
func TestRepliesInOrder(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, tp *topology) {
		c := connect(t, tp.b, fresh("ord"))
		room := fresh("room")
		cmds := []map[string]any{
			{"type": "ping", "ref": "1"},
			{"type": "join", "room": room, "ref": "2"},
			{"type": "send", "room": room, "text": "a", "ref": "3"},
			{"type": "history", "room": room, "ref": "4"},
			{"type": "dance", "ref": "5"},
			{"type": "send", "room": "no such room!", "text": "a", "ref": "6"},
			{"type": "typing", "room": fresh("room"), "ref": "7"},
			{"type": "leave", "room": room, "ref": "8"},
			{"type": "leave", "room": room, "ref": "9"},
			{"type": "ping", "ref": "10"},
		}
		want := []string{"pong", "joined", "sent", "history", "error", "error", "error", "left", "error", "pong"}
		for _, cmd := range cmds {
			c.write(cmd)
		}
		var got []string
		for len(got) < len(cmds) {
			e := c.await("reply", func(e event) bool { return e.has("ref") })
			if e.str("ref") != cmds[len(got)]["ref"] {
				t.Fatalf("reply %d is %s, want the reply to ref %v", len(got), e, cmds[len(got)]["ref"])
			}
			got = append(got, e.typ())
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("replies %v, want %v", got, want)
		}
	})
}
