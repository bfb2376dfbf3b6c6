package auth

// MayJoin reports whether the token allows joining room: true when the token
// had no "rooms" claim, otherwise when some pattern matches the whole room
// name. In a pattern, '*' matches any run of characters (including none) and
// may appear anywhere, any number of times; every other byte matches itself,
// case-sensitively, as room names are. A nil *Claims may join nothing.
func (c *Claims) MayJoin(room string) bool {
	if c == nil {
		return false
	}
	if c.Rooms == nil {
		return true
	}
	for _, p := range c.Rooms {
		if matchPattern(p, room) {
			return true
		}
	}
	return false
}

// matchPattern is a glob match with '*' as the only metacharacter. It runs
// on every join, so it allocates nothing and compiles nothing. On a mismatch
// it backtracks to the most recent '*' only: a later '*' can absorb anything
// an earlier one could, so earlier ones never need revisiting, which keeps
// the worst case at O(len(pattern)·len(s)) instead of exponential.
func matchPattern(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0 // last '*' seen in pattern, and where in s it started
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			// Let the last '*' swallow one more byte and retry.
			mark++
			p, i = star+1, mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
