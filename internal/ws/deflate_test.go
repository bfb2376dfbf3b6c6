package ws

import (
	"bytes"
	"compress/flate"
	"io"
	"strings"
	"testing"
)

// TestNegotiateDeflate is the server's side of RFC 7692 §5 and §7.1: the
// first acceptable offer is taken, each parameter honoured, anything
// unknown or invalid declines that offer (never the handshake).
func TestNegotiateDeflate(t *testing.T) {
	t.Parallel()
	const both = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	tests := []struct {
		name   string
		offers []string
		ok     bool
		resp   string
		bits   int // server_max_window_bits agreed, 0 for the default
	}{
		{"no header", nil, false, "", 0},
		{"empty", []string{""}, false, "", 0},
		{"plain", []string{"permessage-deflate"}, true, both, 0},
		{"case-insensitive name and params", []string{"PerMessage-Deflate; Client_No_Context_Takeover"}, true, both, 0},
		{"spaces", []string{"  permessage-deflate ;  client_no_context_takeover  "}, true, both, 0},
		{"server_no_context_takeover", []string{"permessage-deflate; server_no_context_takeover"}, true, both, 0},
		{"client_max_window_bits without value", []string{"permessage-deflate; client_max_window_bits"}, true, both, 0},
		{"client_max_window_bits=8", []string{"permessage-deflate; client_max_window_bits=8"}, true, both, 0},
		{"client_max_window_bits quoted", []string{`permessage-deflate; client_max_window_bits="10"`}, true, both, 0},
		{"server_max_window_bits=8", []string{"permessage-deflate; server_max_window_bits=8"}, true, both + "; server_max_window_bits=8", 8},
		{"server_max_window_bits=15", []string{"permessage-deflate; server_max_window_bits=15"}, true, both + "; server_max_window_bits=15", 15},
		{"server_max_window_bits quoted", []string{`permessage-deflate; server_max_window_bits="12"`}, true, both + "; server_max_window_bits=12", 12},
		{"every parameter", []string{"permessage-deflate; client_no_context_takeover; server_no_context_takeover; client_max_window_bits=9; server_max_window_bits=10"}, true, both + "; server_max_window_bits=10", 10},

		// Declined offers.
		{"other extension only", []string{"x-webkit-deflate-frame"}, false, "", 0},
		{"unknown parameter", []string{"permessage-deflate; foo"}, false, "", 0},
		{"unknown parameter with value", []string{"permessage-deflate; foo=1"}, false, "", 0},
		{"server_max_window_bits without value", []string{"permessage-deflate; server_max_window_bits"}, false, "", 0},
		{"server_max_window_bits=7", []string{"permessage-deflate; server_max_window_bits=7"}, false, "", 0},
		{"server_max_window_bits=16", []string{"permessage-deflate; server_max_window_bits=16"}, false, "", 0},
		{"server_max_window_bits=010", []string{"permessage-deflate; server_max_window_bits=010"}, false, "", 0},
		{"server_max_window_bits=+9", []string{"permessage-deflate; server_max_window_bits=+9"}, false, "", 0},
		{"server_max_window_bits empty", []string{"permessage-deflate; server_max_window_bits="}, false, "", 0},
		{"client_max_window_bits=7", []string{"permessage-deflate; client_max_window_bits=7"}, false, "", 0},
		{"client_max_window_bits=16", []string{"permessage-deflate; client_max_window_bits=16"}, false, "", 0},
		{"client_max_window_bits=abc", []string{"permessage-deflate; client_max_window_bits=abc"}, false, "", 0},
		{"server_no_context_takeover with value", []string{"permessage-deflate; server_no_context_takeover=true"}, false, "", 0},
		{"client_no_context_takeover with value", []string{"permessage-deflate; client_no_context_takeover=1"}, false, "", 0},
		{"repeated parameter", []string{"permessage-deflate; server_no_context_takeover; server_no_context_takeover"}, false, "", 0},
		{"repeated window bits", []string{"permessage-deflate; server_max_window_bits=9; server_max_window_bits=9"}, false, "", 0},
		{"empty parameter", []string{"permessage-deflate;"}, false, "", 0},
		{"quoted value not a token", []string{`permessage-deflate; server_max_window_bits="1 0"`}, false, "", 0},
		{"unbalanced quote", []string{`permessage-deflate; server_max_window_bits="10`}, false, "", 0},
		{"name not a token", []string{"permessage deflate"}, false, "", 0},

		// Lists: the first acceptable offer wins.
		{"first declined, second taken", []string{"permessage-deflate; server_max_window_bits=7, permessage-deflate; server_max_window_bits=9"}, true, both + "; server_max_window_bits=9", 9},
		{"over two header lines", []string{"permessage-deflate; mystery", "permessage-deflate; server_max_window_bits=11"}, true, both + "; server_max_window_bits=11", 11},
		{"first acceptable wins over later", []string{"permessage-deflate; server_max_window_bits=10, permessage-deflate"}, true, both + "; server_max_window_bits=10", 10},
		{"unknown extension before", []string{"x-foo; a=1, permessage-deflate"}, true, both, 0},
		{"malformed element before", []string{`"bad", permessage-deflate`}, true, both, 0},
		{"comma inside quotes", []string{`x-foo; a="1,2", permessage-deflate; server_max_window_bits=13`}, true, both + "; server_max_window_bits=13", 13},
	}
	for _, tc := range tests {
		p, resp, ok := negotiateDeflate(tc.offers)
		if ok != tc.ok || resp != tc.resp {
			t.Errorf("%s: negotiateDeflate(%q) = %q, %v; want %q, %v", tc.name, tc.offers, resp, ok, tc.resp, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		if !p.serverNoContextTakeover || !p.clientNoContextTakeover || p.serverMaxWindowBits != tc.bits {
			t.Errorf("%s: agreed %+v", tc.name, p)
		}
		// What the server answers, its own client accepts.
		cp, present, err := acceptDeflateResponse([]string{resp})
		if err != nil || !present || cp != p {
			t.Errorf("%s: the answer %q does not read back: %+v, %v, %v", tc.name, resp, cp, present, err)
		}
	}
}

// TestAcceptDeflateResponse is the client's check of the server's answer
// to its offer "permessage-deflate; client_no_context_takeover".
func TestAcceptDeflateResponse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		resp     []string
		present  bool
		takeover bool // the server keeps its context
		bits     int
		wantErr  string
	}{
		{"declined", nil, false, false, 0, ""},
		{"plain", []string{"permessage-deflate"}, true, true, 0, ""},
		{"no context takeover", []string{"permessage-deflate; server_no_context_takeover"}, true, false, 0, ""},
		{"both", []string{"permessage-deflate; server_no_context_takeover; client_no_context_takeover"}, true, false, 0, ""},
		{"server window", []string{"permessage-deflate; server_max_window_bits=10"}, true, true, 10, ""},
		{"quoted window", []string{`permessage-deflate; server_max_window_bits="9"`}, true, true, 9, ""},
		{"upper case", []string{"PERMESSAGE-DEFLATE; SERVER_NO_CONTEXT_TAKEOVER"}, true, false, 0, ""},

		{"unoffered extension", []string{"x-webkit-deflate-frame"}, false, false, 0, "not offered"},
		{"unoffered extension after deflate", []string{"permessage-deflate, x-foo"}, false, false, 0, "not offered"},
		{"deflate twice", []string{"permessage-deflate", "permessage-deflate"}, false, false, 0, "twice"},
		{"client_max_window_bits not offered", []string{"permessage-deflate; client_max_window_bits=10"}, false, false, 0, "invalid"},
		{"client_max_window_bits without value", []string{"permessage-deflate; client_max_window_bits"}, false, false, 0, "invalid"},
		{"unknown parameter", []string{"permessage-deflate; foo"}, false, false, 0, "invalid"},
		{"window too small", []string{"permessage-deflate; server_max_window_bits=7"}, false, false, 0, "invalid"},
		{"window too large", []string{"permessage-deflate; server_max_window_bits=16"}, false, false, 0, "invalid"},
		{"window without value", []string{"permessage-deflate; server_max_window_bits"}, false, false, 0, "invalid"},
		{"flag with value", []string{"permessage-deflate; server_no_context_takeover=1"}, false, false, 0, "invalid"},
		{"repeated parameter", []string{"permessage-deflate; server_no_context_takeover; server_no_context_takeover"}, false, false, 0, "invalid"},
		{"malformed", []string{"permessage-deflate; =1"}, false, false, 0, "malformed"},
		{"not a token", []string{"permessage deflate"}, false, false, 0, "malformed"},
	}
	for _, tc := range tests {
		p, present, err := acceptDeflateResponse(tc.resp)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: %q: err %v, want one containing %q", tc.name, tc.resp, err, tc.wantErr)
			}
			continue
		}
		if err != nil || present != tc.present {
			t.Errorf("%s: %q: present %v, err %v; want present %v", tc.name, tc.resp, present, err, tc.present)
			continue
		}
		if present && (p.serverNoContextTakeover == tc.takeover || p.serverMaxWindowBits != tc.bits) {
			t.Errorf("%s: %q: got %+v", tc.name, tc.resp, p)
		}
	}
}

// TestCompressMessageWindow: for every window size, what compressMessage
// produces inflates to the message, and no back-reference reaches further
// than the window (checked by the test inflater of inflate_test.go).
func TestCompressMessageWindow(t *testing.T) {
	t.Parallel()
	msg := bytes.Repeat(append(randomBytes(5, 200), pattern(300)...), 24) // 12 KB with repeats far apart
	for bits := 8; bits <= 15; bits++ {
		for _, level := range []int{flate.HuffmanOnly, flate.BestSpeed} {
			var b bytes.Buffer
			compressMessage(&b, msg, level, bits)
			in := append(b.Bytes(), 0, 0, 0xff, 0xff)
			var inf inflater
			out, err := inf.inflate(in)
			if err != nil || !bytes.Equal(out, msg) {
				t.Fatalf("bits %d level %d: does not inflate back (%v)", bits, level, err)
			}
			if inf.maxDist > 1<<bits {
				t.Fatalf("bits %d level %d: distance %d beyond the window", bits, level, inf.maxDist)
			}
			if level != flate.HuffmanOnly && bits >= 10 && b.Len() > len(msg)/2 {
				t.Errorf("bits %d level %d: %d bytes compress to %d", bits, level, len(msg), b.Len())
			}
		}
	}
}

// TestDeflateTail: a payload compressed with a final block (§7.2.3.3) and
// one ending in a sync flush both end cleanly with the tail appended.
func TestDeflateTail(t *testing.T) {
	t.Parallel()
	for _, final := range []bool{false, true} {
		var b bytes.Buffer
		fw, _ := flate.NewWriter(&b, flate.BestSpeed)
		fw.Write([]byte("hello"))
		if final {
			fw.Close()
		} else {
			fw.Flush()
			b.Truncate(b.Len() - 4)
		}
		out, err := io.ReadAll(flate.NewReader(io.MultiReader(&b, strings.NewReader(deflateTail))))
		if err != nil || string(out) != "hello" {
			t.Errorf("final %v: %q, %v", final, out, err)
		}
	}
}
