package ws

import "unicode/utf8"

// utf8Validator checks UTF-8 incrementally, so that a text message that is
// invalid fails as soon as the offending bytes arrive, even when the message
// is split over frames at arbitrary byte positions (RFC 6455 §8.1).
//
// The bulk of each chunk is checked with utf8.Valid (which has an ASCII fast
// path); only a rune cut by the chunk boundary goes byte by byte.
type utf8Validator struct {
	need   uint8 // continuation bytes still expected
	lo, hi byte  // allowed range of the next continuation byte
}

// write checks the next chunk; false means the text is invalid.
func (v *utf8Validator) write(p []byte) bool {
	for v.need > 0 && len(p) > 0 {
		if !v.step(p[0]) {
			return false
		}
		p = p[1:]
	}
	if len(p) == 0 {
		return true
	}
	// Find the start of a trailing rune that is not complete yet.
	tail := len(p)
	for i := len(p) - 1; i >= 0 && i >= len(p)-utf8.UTFMax; i-- {
		if p[i]&0xC0 != 0x80 { // not a continuation byte
			if p[i] >= 0xC0 && !utf8.FullRune(p[i:]) {
				tail = i
			}
			break
		}
	}
	if !utf8.Valid(p[:tail]) {
		return false
	}
	for _, b := range p[tail:] {
		if !v.step(b) {
			return false
		}
	}
	return true
}

// complete reports whether the text so far ends at a rune boundary.
func (v *utf8Validator) complete() bool { return v.need == 0 }

func (v *utf8Validator) reset() { *v = utf8Validator{} }

// step advances by one byte; it accepts exactly the well-formed sequences of
// RFC 3629 (no overlongs, no surrogates, nothing above U+10FFFF).
func (v *utf8Validator) step(b byte) bool {
	if v.need > 0 {
		if b < v.lo || b > v.hi {
			return false
		}
		v.need--
		v.lo, v.hi = 0x80, 0xBF
		return true
	}
	switch {
	case b < 0x80:
		return true
	case b >= 0xC2 && b <= 0xDF:
		v.need, v.lo, v.hi = 1, 0x80, 0xBF
	case b == 0xE0:
		v.need, v.lo, v.hi = 2, 0xA0, 0xBF
	case b >= 0xE1 && b <= 0xEC, b == 0xEE, b == 0xEF:
		v.need, v.lo, v.hi = 2, 0x80, 0xBF
	case b == 0xED:
		v.need, v.lo, v.hi = 2, 0x80, 0x9F
	case b == 0xF0:
		v.need, v.lo, v.hi = 3, 0x90, 0xBF
	case b >= 0xF1 && b <= 0xF3:
		v.need, v.lo, v.hi = 3, 0x80, 0xBF
	case b == 0xF4:
		v.need, v.lo, v.hi = 3, 0x80, 0x8F
	default:
		return false
	}
	return true
}
