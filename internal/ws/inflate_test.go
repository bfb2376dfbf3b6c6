package ws

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
)

// inflater is a small raw DEFLATE (RFC 1951) decoder written for the tests,
// after zlib's puff.c. Unlike compress/flate it reports the largest
// back-reference distance it met, so that a test can check that a peer
// kept to the window it agreed to (RFC 7692 §7.1.2.1). It keeps the output
// of earlier messages as history (context takeover) until reset.
type inflater struct {
	hist    []byte // earlier output, at most 32 KiB
	maxDist int    // largest distance of the last inflate call
}

func (f *inflater) reset() { f.hist = f.hist[:0] }

var errInflate = errors.New("inflate: invalid data")

type bitReader struct {
	in     []byte
	pos    int
	bitbuf uint32
	bitcnt uint
}

func (br *bitReader) bits(n uint) (int, error) {
	for br.bitcnt < n {
		if br.pos >= len(br.in) {
			return 0, io.ErrUnexpectedEOF
		}
		br.bitbuf |= uint32(br.in[br.pos]) << br.bitcnt
		br.pos++
		br.bitcnt += 8
	}
	v := br.bitbuf & (1<<n - 1)
	br.bitbuf >>= n
	br.bitcnt -= n
	return int(v), nil
}

type huffman struct {
	count  [16]int
	symbol []int
}

func (h *huffman) build(lengths []int) error {
	h.count = [16]int{}
	for _, l := range lengths {
		h.count[l]++
	}
	if h.count[0] == len(lengths) {
		h.symbol = h.symbol[:0]
		return nil
	}
	left := 1
	for l := 1; l < 16; l++ {
		left <<= 1
		left -= h.count[l]
		if left < 0 {
			return fmt.Errorf("%w: over-subscribed code", errInflate)
		}
	}
	var offs [16]int
	for l := 1; l < 15; l++ {
		offs[l+1] = offs[l] + h.count[l]
	}
	h.symbol = make([]int, len(lengths))
	for sym, l := range lengths {
		if l != 0 {
			h.symbol[offs[l]] = sym
			offs[l]++
		}
	}
	return nil
}

func (br *bitReader) decode(h *huffman) (int, error) {
	code, first, index := 0, 0, 0
	for l := 1; l < 16; l++ {
		b, err := br.bits(1)
		if err != nil {
			return 0, err
		}
		code |= b
		count := h.count[l]
		if code-count < first {
			return h.symbol[index+(code-first)], nil
		}
		index += count
		first += count
		first <<= 1
		code <<= 1
	}
	return 0, fmt.Errorf("%w: ran out of codes", errInflate)
}

var (
	lenBase  = [29]int{3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258}
	lenExtra = [29]uint{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	distBase = [30]int{1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577}
	distExtr = [30]uint{0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13}
	clOrder  = [19]int{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}
)

// inflate decodes one permessage-deflate message: in is the payload with
// 0x00 0x00 0xff 0xff appended, so it ends at a block boundary (or with a
// final block).
func (f *inflater) inflate(in []byte) ([]byte, error) {
	br := &bitReader{in: in}
	buf := append([]byte(nil), f.hist...)
	start := len(buf)
	f.maxDist = 0
	var lencode, distcode huffman
	for {
		if br.pos == len(br.in) && br.bitcnt == 0 {
			break // the end of the stored block that ends a message
		}
		final, err := br.bits(1)
		if err != nil {
			return nil, err
		}
		typ, err := br.bits(2)
		if err != nil {
			return nil, err
		}
		switch typ {
		case 0:
			br.bitbuf, br.bitcnt = 0, 0
			if br.pos+4 > len(br.in) {
				return nil, io.ErrUnexpectedEOF
			}
			n := int(br.in[br.pos]) | int(br.in[br.pos+1])<<8
			nn := int(br.in[br.pos+2]) | int(br.in[br.pos+3])<<8
			if n != ^nn&0xFFFF {
				return nil, fmt.Errorf("%w: stored length mismatch", errInflate)
			}
			br.pos += 4
			if br.pos+n > len(br.in) {
				return nil, io.ErrUnexpectedEOF
			}
			buf = append(buf, br.in[br.pos:br.pos+n]...)
			br.pos += n
		case 1:
			var lengths [288 + 30]int
			for i := range 288 {
				switch {
				case i < 144:
					lengths[i] = 8
				case i < 256:
					lengths[i] = 9
				case i < 280:
					lengths[i] = 7
				default:
					lengths[i] = 8
				}
			}
			for i := range 30 {
				lengths[288+i] = 5
			}
			if err := lencode.build(lengths[:288]); err != nil {
				return nil, err
			}
			if err := distcode.build(lengths[288:]); err != nil {
				return nil, err
			}
			if buf, err = f.codes(br, buf, &lencode, &distcode); err != nil {
				return nil, err
			}
		case 2:
			nlen, err1 := br.bits(5)
			ndist, err2 := br.bits(5)
			ncode, err3 := br.bits(4)
			if err := errors.Join(err1, err2, err3); err != nil {
				return nil, err
			}
			nlen, ndist, ncode = nlen+257, ndist+1, ncode+4
			if nlen > 286 || ndist > 30 {
				return nil, fmt.Errorf("%w: bad counts", errInflate)
			}
			var lengths [320]int
			for i := range ncode {
				if lengths[clOrder[i]], err = br.bits(3); err != nil {
					return nil, err
				}
			}
			if err := lencode.build(lengths[:19]); err != nil {
				return nil, err
			}
			var ll [320]int
			for i := 0; i < nlen+ndist; {
				sym, err := br.decode(&lencode)
				if err != nil {
					return nil, err
				}
				if sym < 16 {
					ll[i] = sym
					i++
					continue
				}
				prev, rep := 0, 0
				switch sym {
				case 16:
					if i == 0 {
						return nil, fmt.Errorf("%w: repeat with no first length", errInflate)
					}
					prev = ll[i-1]
					rep, err = br.bits(2)
					rep += 3
				case 17:
					rep, err = br.bits(3)
					rep += 3
				default:
					rep, err = br.bits(7)
					rep += 11
				}
				if err != nil {
					return nil, err
				}
				if i+rep > nlen+ndist {
					return nil, fmt.Errorf("%w: too many lengths", errInflate)
				}
				for ; rep > 0; rep-- {
					ll[i] = prev
					i++
				}
			}
			if ll[256] == 0 {
				return nil, fmt.Errorf("%w: no end-of-block code", errInflate)
			}
			if err := lencode.build(ll[:nlen]); err != nil {
				return nil, err
			}
			if err := distcode.build(ll[nlen : nlen+ndist]); err != nil {
				return nil, err
			}
			if buf, err = f.codes(br, buf, &lencode, &distcode); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("%w: block type 3", errInflate)
		}
		if final == 1 {
			break
		}
	}
	out := buf[start:]
	if len(buf) > 1<<15 {
		buf = buf[len(buf)-1<<15:]
	}
	f.hist = append(f.hist[:0], buf...)
	return out, nil
}

func (f *inflater) codes(br *bitReader, buf []byte, lencode, distcode *huffman) ([]byte, error) {
	for {
		sym, err := br.decode(lencode)
		if err != nil {
			return nil, err
		}
		switch {
		case sym < 256:
			buf = append(buf, byte(sym))
			continue
		case sym == 256:
			return buf, nil
		}
		sym -= 257
		if sym >= 29 {
			return nil, fmt.Errorf("%w: bad length symbol", errInflate)
		}
		extra, err := br.bits(lenExtra[sym])
		if err != nil {
			return nil, err
		}
		n := lenBase[sym] + extra
		dsym, err := br.decode(distcode)
		if err != nil {
			return nil, err
		}
		if dsym >= 30 {
			return nil, fmt.Errorf("%w: bad distance symbol", errInflate)
		}
		if extra, err = br.bits(distExtr[dsym]); err != nil {
			return nil, err
		}
		dist := distBase[dsym] + extra
		if dist > len(buf) {
			return nil, fmt.Errorf("%w: distance %d too far back", errInflate, dist)
		}
		f.maxDist = max(f.maxDist, dist)
		for ; n > 0; n-- {
			buf = append(buf, buf[len(buf)-dist])
		}
	}
}

// TestInflater checks the test decoder itself against compress/flate, on
// every block type, with and without history.
func TestInflater(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 70000)
	for i := range random {
		random[i] = byte(rng.IntN(256))
	}
	inputs := map[string][]byte{
		"empty":   nil,
		"short":   []byte("hello"),
		"text":    pattern(100000),
		"random":  random,
		"zeros":   make([]byte, 300000),
		"mixed":   append(pattern(5000), random[:5000]...),
		"one":     {0},
		"repeats": bytes.Repeat([]byte("ab"), 40000),
	}
	for name, in := range inputs {
		for _, level := range []int{flate.NoCompression, flate.BestSpeed, flate.DefaultCompression, flate.BestCompression, flate.HuffmanOnly} {
			var cb bytes.Buffer
			fw, _ := flate.NewWriter(&cb, level)
			var inf inflater
			for msg := range 2 { // the second message may refer to the first
				cb.Reset()
				fw.Write(in)
				fw.Flush()
				payload := bytes.TrimSuffix(cb.Bytes(), []byte{0, 0, 0xff, 0xff})
				got, err := inf.inflate(append(payload, 0, 0, 0xff, 0xff))
				if err != nil {
					t.Fatalf("%s level %d message %d: %v", name, level, msg, err)
				}
				if !bytes.Equal(got, in) {
					t.Fatalf("%s level %d message %d: output differs", name, level, msg)
				}
				if level == flate.HuffmanOnly && inf.maxDist != 0 {
					t.Fatalf("%s: Huffman-only output has distance %d", name, inf.maxDist)
				}
			}
		}
	}
	// A final block ends the stream before the appended tail.
	var cb bytes.Buffer
	fw, _ := flate.NewWriter(&cb, flate.BestSpeed)
	fw.Write(pattern(1000))
	fw.Close()
	var inf inflater
	got, err := inf.inflate(cb.Bytes())
	if err != nil || !bytes.Equal(got, pattern(1000)) {
		t.Fatalf("final block: %v", err)
	}
	if _, err := inf.inflate([]byte{0x07, 0, 0}); err == nil {
		t.Fatal("block type 3 accepted")
	}
}
