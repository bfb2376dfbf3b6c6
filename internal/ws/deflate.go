package ws

import (
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
)

// permessage-deflate (RFC 7692).
//
// chatd compresses every message without context takeover, on both sides:
// as a server it always answers server_no_context_takeover and
// client_no_context_takeover (§7.1.1.1 and §7.1.1.2 allow that whatever the
// offer said), so one compressed broadcast frame is valid on every
// connection and no connection keeps a compressor or decompressor (about
// 650 KiB and 40 KiB in compress/flate) between messages: both come from
// pools for the length of one message. As a client it offers
// client_no_context_takeover, and it still decompresses a server that keeps
// its context (the only case that needs a per-connection window).

const extensionDeflate = "permessage-deflate"

// deflateTail is what RFC 7692 §7.2.2 asks a receiver to append (the empty
// stored block the sender stripped), followed by a final empty stored block
// so that the decompressor ends with io.EOF rather than ErrUnexpectedEOF.
const deflateTail = "\x00\x00\xff\xff\x01\x00\x00\xff\xff"

// deflateParams is a negotiated (or offered) permessage-deflate
// configuration.
type deflateParams struct {
	serverNoContextTakeover bool
	clientNoContextTakeover bool
	// serverMaxWindowBits and clientMaxWindowBits are 8..15 when present
	// with a value, 0 when absent; clientMaxWindowBits is -1 when present
	// without a value (an offer saying the client supports the parameter).
	serverMaxWindowBits int
	clientMaxWindowBits int
}

// extension is one element of a Sec-WebSocket-Extensions list.
type extension struct {
	name   string
	params []extensionParam
}

type extensionParam struct {
	name     string
	value    string
	hasValue bool
}

// parseExtensions parses Sec-WebSocket-Extensions header values (RFC 6455
// §9.1). Elements that do not follow the grammar are dropped, as a server
// may decline any extension it does not understand; ok is false when any
// element was malformed.
func parseExtensions(values []string) (exts []extension, ok bool) {
	ok = true
	for _, v := range values {
		for elem := range splitOutsideQuotes(v, ',') {
			elem = strings.TrimSpace(elem)
			if elem == "" {
				continue
			}
			ext, valid := parseExtension(elem)
			if !valid {
				ok = false
				continue
			}
			exts = append(exts, ext)
		}
	}
	return exts, ok
}

func parseExtension(s string) (extension, bool) {
	var ext extension
	first := true
	for part := range splitOutsideQuotes(s, ';') {
		part = strings.TrimSpace(part)
		if first {
			first = false
			if !isToken(part) {
				return ext, false
			}
			ext.name = strings.ToLower(part)
			continue
		}
		name, value, hasValue := strings.Cut(part, "=")
		name = strings.TrimSpace(name)
		if !isToken(name) {
			return ext, false
		}
		p := extensionParam{name: strings.ToLower(name), hasValue: hasValue}
		if hasValue {
			value = strings.TrimSpace(value)
			if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
				value = unquote(value[1 : len(value)-1])
			}
			// §9.1: a quoted value must still be a token once unquoted.
			if !isToken(value) {
				return ext, false
			}
			p.value = value
		}
		ext.params = append(ext.params, p)
	}
	return ext, !first
}

// splitOutsideQuotes yields the parts of s between separators that are not
// inside a quoted string.
func splitOutsideQuotes(s string, sep byte) func(func(string) bool) {
	return func(yield func(string) bool) {
		start, quoted := 0, false
		for i := 0; i < len(s); i++ {
			switch c := s[i]; {
			case c == '\\' && quoted:
				i++
			case c == '"':
				quoted = !quoted
			case c == sep && !quoted:
				if !yield(s[start:i]) {
					return
				}
				start = i + 1
			}
		}
		yield(s[start:])
	}
}

func unquote(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// isToken reports whether s is an RFC 7230 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenByte[s[i]] {
			return false
		}
	}
	return true
}

// TokenByte reports whether c may appear in a token (RFC 9110 §5.6.2),
// such as a header name: for parsers of HTTP heads outside this package.
func TokenByte(c byte) bool { return tokenByte[c] }

// tokenByte marks the bytes of a token (RFC 9110 §5.6.2), those
// net/textproto accepts in a header name.
var tokenByte = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// parseWindowBits parses an 8..15 decimal without leading zeros (RFC 7692
// §7.1.2).
func parseWindowBits(s string) (int, bool) {
	if len(s) == 0 || len(s) > 2 || s[0] == '0' {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false // not even a sign: 1*DIGIT
		}
		n = n*10 + int(s[i]-'0')
	}
	if n < 8 || n > 15 {
		return 0, false
	}
	return n, true
}

// parseDeflateParams validates the parameters of one permessage-deflate
// element, as offered by a client (offer true) or answered by a server.
// Unknown parameters, repeated parameters and bad values make it invalid.
func parseDeflateParams(ext extension, offer bool) (deflateParams, bool) {
	var p deflateParams
	seen := map[string]bool{}
	for _, prm := range ext.params {
		if seen[prm.name] {
			return p, false // §7: each parameter at most once
		}
		seen[prm.name] = true
		switch prm.name {
		case "server_no_context_takeover":
			if prm.hasValue {
				return p, false
			}
			p.serverNoContextTakeover = true
		case "client_no_context_takeover":
			if prm.hasValue {
				return p, false
			}
			p.clientNoContextTakeover = true
		case "server_max_window_bits":
			n, ok := parseWindowBits(prm.value)
			if !prm.hasValue || !ok {
				return p, false
			}
			p.serverMaxWindowBits = n
		case "client_max_window_bits":
			if !prm.hasValue {
				if !offer {
					return p, false // a response must give the value
				}
				p.clientMaxWindowBits = -1
				continue
			}
			n, ok := parseWindowBits(prm.value)
			if !ok {
				return p, false
			}
			p.clientMaxWindowBits = n
		default:
			return p, false
		}
	}
	return p, true
}

// negotiateDeflate picks the first acceptable permessage-deflate offer from
// the client's Sec-WebSocket-Extensions values and returns the parameters
// chatd will use and the response header value. Offers it cannot accept
// are declined (RFC 7692 §5), never an error.
func negotiateDeflate(values []string) (deflateParams, string, bool) {
	exts, _ := parseExtensions(values)
	for _, ext := range exts {
		if ext.name != extensionDeflate {
			continue
		}
		offer, ok := parseDeflateParams(ext, true)
		if !ok {
			continue
		}
		agreed := deflateParams{
			serverNoContextTakeover: true,
			clientNoContextTakeover: true,
			serverMaxWindowBits:     offer.serverMaxWindowBits,
		}
		resp := extensionDeflate + "; server_no_context_takeover; client_no_context_takeover"
		if offer.serverMaxWindowBits > 0 {
			resp += "; server_max_window_bits=" + strconv.Itoa(offer.serverMaxWindowBits)
		}
		return agreed, resp, true
	}
	return deflateParams{}, "", false
}

// clientDeflateOffer is what Dial offers: no context takeover for the
// client's messages, so that it needs no compressor between messages.
const clientDeflateOffer = extensionDeflate + "; client_no_context_takeover"

// acceptDeflateResponse validates the server's answer to clientDeflateOffer.
// present is false when the server declined compression.
func acceptDeflateResponse(values []string) (p deflateParams, present bool, err error) {
	exts, ok := parseExtensions(values)
	if !ok {
		return p, false, errors.New("ws: malformed Sec-WebSocket-Extensions in response")
	}
	for _, ext := range exts {
		if ext.name != extensionDeflate {
			return p, false, errors.New("ws: server accepted an extension that was not offered: " + ext.name)
		}
		if present {
			return p, false, errors.New("ws: server accepted permessage-deflate twice")
		}
		var valid bool
		p, valid = parseDeflateParams(ext, false)
		if !valid || p.clientMaxWindowBits != 0 {
			// client_max_window_bits may only be answered when offered.
			return p, false, errors.New("ws: invalid permessage-deflate parameters in response")
		}
		present = true
	}
	return p, present, nil
}

// Pools. Compressors are large, so they live only for one message.

var flateWriterPools [flate.BestCompression - flate.HuffmanOnly + 1]sync.Pool

func getFlateWriter(level int, w io.Writer) *flate.Writer {
	if fw, ok := flateWriterPools[level-flate.HuffmanOnly].Get().(*flate.Writer); ok {
		fw.Reset(w)
		return fw
	}
	fw, _ := flate.NewWriter(w, level) // level is validated by the caller
	return fw
}

func putFlateWriter(level int, fw *flate.Writer) {
	fw.Reset(io.Discard) // drop the reference to the output buffer
	flateWriterPools[level-flate.HuffmanOnly].Put(fw)
}

var flateReaderPool sync.Pool

func getFlateReader(r io.Reader, dict []byte) io.ReadCloser {
	if fr, ok := flateReaderPool.Get().(io.ReadCloser); ok {
		_ = fr.(flate.Resetter).Reset(r, dict)
		return fr
	}
	return flate.NewReaderDict(r, dict)
}

func putFlateReader(fr io.ReadCloser) {
	_ = fr.(flate.Resetter).Reset(emptyByteReader{}, nil)
	flateReaderPool.Put(fr)
}

type emptyByteReader struct{}

func (emptyByteReader) Read([]byte) (int, error) { return 0, io.EOF }
func (emptyByteReader) ReadByte() (byte, error)  { return 0, io.EOF }

// compressMessage appends the permessage-deflate payload of p (a complete
// message, compressed without context) to dst.
//
// windowBits below 15 limits how far back the compressed data may refer
// (RFC 7692 §7.1.2.1), but compress/flate always uses a 32 KiB window. A
// message longer than the peer's window is therefore compressed in pieces
// of at most the window's size, each by a reset compressor that cannot
// refer back beyond the start of its piece; the pieces' sync-flushed
// blocks simply follow each other in one DEFLATE stream.
func compressMessage(dst *bytes.Buffer, p []byte, level, windowBits int) {
	piece := len(p)
	if windowBits > 0 && windowBits < 15 {
		piece = 1 << windowBits
	}
	fw := getFlateWriter(level, dst)
	for {
		n := min(piece, len(p))
		_, _ = fw.Write(p[:n]) // writes to a bytes.Buffer do not fail
		_ = fw.Flush()
		p = p[n:]
		if len(p) == 0 {
			break
		}
		fw.Reset(dst)
	}
	putFlateWriter(level, fw)
	// §7.2.1: remove the 0x00 0x00 0xff 0xff that ends the sync flush.
	dst.Truncate(dst.Len() - 4)
}
