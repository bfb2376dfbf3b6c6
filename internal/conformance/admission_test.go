package conformance_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// TestAdmission checks the admission rules of PROTOCOL.md §1: the per-IP
// upgrade rate (429) and the per-node connection cap (503), both with
// Retry-After and a JSON body.
func TestAdmission(t *testing.T) {
	t.Parallel()
	retryAfter := func(t *testing.T, resp *http.Response, lo, hi int) {
		t.Helper()
		v, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		if err != nil || v < lo || v > hi {
			t.Errorf("Retry-After %q, want whole seconds from %d to %d", resp.Header.Get("Retry-After"), lo, hi)
		}
	}
	forEach(t, func(t *testing.T, tp *topology) {
		t.Run("upgrade rate per IP", func(t *testing.T) {
			atp := tp.nodes(t, "-upgrade-rate", "1", "-upgrade-burst", "3")
			for _, n := range atp.each() {
				user := fresh("ad")
				for i := range 3 {
					resp, body, _ := roundTrip(t, n, upgrade(n, token(t, user)))
					if resp.StatusCode != http.StatusSwitchingProtocols {
						t.Fatalf("%s: upgrade %d of the burst of 3: %s %s", n.id, i, resp.Status, body)
					}
				}
				resp, body, _ := roundTrip(t, n, upgrade(n, token(t, user)))
				checkRefusal(t, resp, body, http.StatusTooManyRequests, "rate_limited")
				retryAfter(t, resp, 1, 2)
				// A second later, the bucket holds one upgrade again.
				time.Sleep(1100 * time.Millisecond)
				resp, body, _ = roundTrip(t, n, upgrade(n, token(t, user)))
				if resp.StatusCode != http.StatusSwitchingProtocols {
					t.Errorf("%s: an upgrade a second later: %s %s", n.id, resp.Status, body)
				}
			}
		})
		t.Run("connection cap", func(t *testing.T) {
			atp := tp.nodes(t, "-max-conns", "2")
			for _, n := range atp.each() {
				c1, c2 := connect(t, n, fresh("ad")), connect(t, n, fresh("ad"))
				resp, body, _ := roundTrip(t, n, upgrade(n, token(t, fresh("ad"))))
				checkRefusal(t, resp, body, http.StatusServiceUnavailable, "unavailable")
				retryAfter(t, resp, 1, 5)
				c2.ping()
				_ = c1.conn.CloseNow()
				// The slot is free again once the server saw the close.
				deadline := time.Now().Add(wait)
				for {
					resp, body, _ := roundTrip(t, n, upgrade(n, token(t, fresh("ad"))))
					if resp.StatusCode == http.StatusSwitchingProtocols {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s: after a close, still %s %s", n.id, resp.Status, body)
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	})
}
