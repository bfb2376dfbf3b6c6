package ws

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
)

// maskNaive is RFC 6455 §5.3 as written: octet i is XORed with key octet
// i mod 4.
func maskNaive(key [4]byte, offset int, b []byte) {
	for i := range b {
		b[i] ^= key[(offset+i)&3]
	}
}

// TestMaskMatchesBytewise compares the word-at-a-time masking with the
// bytewise definition for every length up to 80 and some longer ones, every alignment of the
// slice in memory, and every split of the payload into two calls (the key
// must carry over, rotated, from one call to the next).
func TestMaskMatchesBytewise(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	keys := [][4]byte{{0, 0, 0, 0}, {0xff, 0xff, 0xff, 0xff}, {1, 2, 3, 4}, {0x80, 0x01, 0xfe, 0x7f}}
	for range 2 {
		var k [4]byte
		binary.LittleEndian.PutUint32(k[:], rng.Uint32())
		keys = append(keys, k)
	}
	src := make([]byte, 1100+8)
	for i := range src {
		src[i] = byte(rng.Uint32())
	}
	for _, key := range keys {
		word := binary.LittleEndian.Uint32(key[:])
		for n := range 1100 {
			if n > 80 && n%61 != 0 {
				continue // every short length, and some long ones
			}
			for align := 0; align < 8; align++ {
				want := bytes.Clone(src[align : align+n])
				maskNaive(key, 0, want)

				buf := make([]byte, 8+n)
				got := buf[align : align+n]
				copy(got, src[align:align+n])
				next := maskBytes(word, got)
				if !bytes.Equal(got, want) {
					t.Fatalf("key %x, %d bytes at alignment %d: masked differently", key, n, align)
				}
				// The returned key continues at octet n.
				var nk [4]byte
				binary.LittleEndian.PutUint32(nk[:], next)
				for i := range 4 {
					if nk[i] != key[(n+i)&3] {
						t.Fatalf("key %x after %d bytes: next key %x", key, n, nk)
					}
				}
			}
			// Split in two calls at every point (only for some lengths, to
			// keep the test quick).
			if n%7 != 0 && n < 40 {
				continue
			}
			want := bytes.Clone(src[:n])
			maskNaive(key, 0, want)
			for cut := 0; cut <= n; cut++ {
				got := bytes.Clone(src[:n])
				k := maskBytes(word, got[:cut])
				maskBytes(k, got[cut:])
				if !bytes.Equal(got, want) {
					t.Fatalf("key %x, %d bytes split at %d: masked differently", key, n, cut)
				}
			}
		}
	}
}

// TestHeaderRoundTrip encodes headers with every length class and parses
// them back.
func TestHeaderRoundTrip(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	lengths := []int{0, 1, 125, 126, 127, 0xFFFF, 0x10000, 1 << 31, 1<<40 + 3}
	for range 1000 {
		lengths = append(lengths, int(rng.Int64N(1<<62)))
	}
	ops := []opcode{opContinuation, opText, opBinary, opClose, opPing, opPong}
	for i, n := range lengths {
		fin, rsv1, masked := i%2 == 0, i%3 == 0, i%5 < 2
		op := ops[i%len(ops)]
		key := rng.Uint32()
		b := appendHeader(nil, fin, rsv1, op, n, masked, key)
		if len(b) != headerLen(b[1]) {
			t.Fatalf("length %d: header of %d bytes, headerLen says %d", n, len(b), headerLen(b[1]))
		}
		h, err := parseHeader(b)
		if err != nil {
			t.Fatalf("length %d: %v", n, err)
		}
		want := header{fin: fin, rsv1: rsv1, op: op, masked: masked, length: int64(n)}
		if masked {
			want.key = key
		}
		if h != want {
			t.Fatalf("round trip: got %+v, want %+v", h, want)
		}
	}
}

// TestParseHeaderErrors: the length encodings §5.2 forbids.
func TestParseHeaderErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		b    []byte
	}{
		{"16-bit length below 126", []byte{0x82, 126, 0, 125}},
		{"64-bit length below 65536", []byte{0x82, 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff}},
		{"64-bit length with the top bit", []byte{0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0}},
	}
	for _, tc := range tests {
		if _, err := parseHeader(tc.b); err == nil {
			t.Errorf("%s: parsed without error", tc.name)
		} else if CloseStatus(err) != 0 {
			t.Errorf("%s: error is already a close: %v", tc.name, err)
		}
	}
}

func BenchmarkMask(b *testing.B) {
	for _, n := range []int{16, 125, 1 << 10, 64 << 10} {
		buf := make([]byte, n)
		b.Run(fmt.Sprintf("word/%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				maskBytes(0x12345678, buf)
			}
		})
		b.Run(fmt.Sprintf("bytewise/%d", n), func(b *testing.B) {
			b.SetBytes(int64(n))
			b.ReportAllocs()
			key := [4]byte{0x78, 0x56, 0x34, 0x12}
			for b.Loop() {
				maskNaive(key, 0, buf)
			}
		})
	}
}
