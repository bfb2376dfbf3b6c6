package ws

import (
	"encoding/binary"
	"math/bits"
)

// opcode is a frame opcode (RFC 6455 §5.2).
type opcode byte

const (
	opContinuation opcode = 0x0
	opText         opcode = 0x1
	opBinary       opcode = 0x2
	opClose        opcode = 0x8
	opPing         opcode = 0x9
	opPong         opcode = 0xA
)

func (op opcode) isControl() bool { return op&0x8 != 0 }

// isKnown reports whether op is defined by RFC 6455; the others are
// reserved and fail the connection (§5.2).
func (op opcode) isKnown() bool {
	switch op {
	case opContinuation, opText, opBinary, opClose, opPing, opPong:
		return true
	}
	return false
}

const (
	bitFIN  = 0x80
	bitRSV1 = 0x40
	bitRSV2 = 0x20
	bitRSV3 = 0x10
	bitMask = 0x80

	// maxControlPayload is the largest payload of a control frame (§5.5).
	maxControlPayload = 125
	// maxHeaderSize is a header with a 64-bit length and a masking key.
	maxHeaderSize = 14
)

// header is a decoded frame header.
type header struct {
	fin    bool
	rsv1   bool
	rsv2   bool
	rsv3   bool
	op     opcode
	masked bool
	key    uint32 // masking key as a little-endian word, see maskBytes
	length int64
}

// headerLen returns how many bytes the header starting with b0, b1 takes.
func headerLen(b1 byte) int {
	n := 2
	switch b1 & 0x7F {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&bitMask != 0 {
		n += 4
	}
	return n
}

// parseHeader decodes a header from b, which holds at least headerLen(b[1])
// bytes. It checks only what the header alone can tell: length encoding.
func parseHeader(b []byte) (header, error) {
	h := header{
		fin:    b[0]&bitFIN != 0,
		rsv1:   b[0]&bitRSV1 != 0,
		rsv2:   b[0]&bitRSV2 != 0,
		rsv3:   b[0]&bitRSV3 != 0,
		op:     opcode(b[0] & 0x0F),
		masked: b[1]&bitMask != 0,
	}
	i := 2
	switch n := b[1] & 0x7F; n {
	case 126:
		h.length = int64(binary.BigEndian.Uint16(b[2:]))
		i += 2
		if h.length < 126 {
			// §5.2: "the minimal number of bytes MUST be used".
			return h, errProtocol("frame length not minimally encoded")
		}
	case 127:
		u := binary.BigEndian.Uint64(b[2:])
		i += 8
		if u>>63 != 0 {
			// §5.2: the most significant bit MUST be 0.
			return h, errProtocol("frame length has its most significant bit set")
		}
		if u <= 0xFFFF {
			return h, errProtocol("frame length not minimally encoded")
		}
		h.length = int64(u)
	default:
		h.length = int64(n)
	}
	if h.masked {
		h.key = binary.LittleEndian.Uint32(b[i:])
	}
	return h, nil
}

// appendHeader appends an encoded frame header to dst.
func appendHeader(dst []byte, fin, rsv1 bool, op opcode, length int, masked bool, key uint32) []byte {
	b0 := byte(op)
	if fin {
		b0 |= bitFIN
	}
	if rsv1 {
		b0 |= bitRSV1
	}
	var b1 byte
	if masked {
		b1 = bitMask
	}
	switch {
	case length < 126:
		dst = append(dst, b0, b1|byte(length))
	case length <= 0xFFFF:
		dst = append(dst, b0, b1|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(length))
	default:
		dst = append(dst, b0, b1|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(length))
	}
	if masked {
		dst = binary.LittleEndian.AppendUint32(dst, key)
	}
	return dst
}

// maskBytes XORs b with the masking key (RFC 6455 §5.3) and returns the key
// rotated so that the next call continues where this one stopped.
//
// key holds the four key octets as a little-endian word, so key's low byte
// is the octet for the next position. The bulk is processed eight bytes at a
// time, 32 per iteration; the key word is invariant over a multiple of four
// bytes, so only the ragged tail rotates it.
func maskBytes(key uint32, b []byte) uint32 {
	if len(b) >= 8 {
		k := uint64(key)<<32 | uint64(key)
		for len(b) >= 32 {
			v0 := binary.LittleEndian.Uint64(b)
			v1 := binary.LittleEndian.Uint64(b[8:])
			v2 := binary.LittleEndian.Uint64(b[16:])
			v3 := binary.LittleEndian.Uint64(b[24:])
			binary.LittleEndian.PutUint64(b, v0^k)
			binary.LittleEndian.PutUint64(b[8:], v1^k)
			binary.LittleEndian.PutUint64(b[16:], v2^k)
			binary.LittleEndian.PutUint64(b[24:], v3^k)
			b = b[32:]
		}
		for len(b) >= 8 {
			binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^k)
			b = b[8:]
		}
	}
	for i := range b {
		b[i] ^= byte(key)
		key = bits.RotateLeft32(key, -8)
	}
	return key
}
