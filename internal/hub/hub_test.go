package hub_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/chatd/chatd/internal/hub"
	"github.com/chatd/chatd/internal/protocol"
	"github.com/chatd/chatd/internal/ws"
)

// countingConn is a local connection that counts what it is sent and
// remembers the last frame.
type countingConn struct {
	user string
	n    atomic.Int64
	last atomic.Pointer[ws.PreparedMessage]
}

func (c *countingConn) Send(pm *ws.PreparedMessage, droppable bool) {
	c.n.Add(1)
	c.last.Store(pm)
}

func (c *countingConn) UserID() string { return c.user }

// BenchmarkHubFanout publishes to a room with 1000 local members: one
// message is stored, encoded once, and queued on every member.
func BenchmarkHubFanout(b *testing.B) {
	for _, members := range []int{10, 1000} {
		b.Run(strconv.Itoa(members), func(b *testing.B) {
			broker := hub.NewMemoryBroker(hub.RetentionConfig{Size: 1000})
			h := hub.New(broker)
			ctx := context.Background()
			conns := make([]*countingConn, members)
			for i := range conns {
				c := &countingConn{user: "u" + strconv.Itoa(i)}
				conns[i] = c
				if _, err := h.Join(ctx, c, "room", protocol.Member{User: c.user, Name: c.user}, "", "", 50); err != nil {
					b.Fatal(err)
				}
			}
			sender := conns[0]
			m := protocol.Message{Room: "room", From: sender.user, Name: sender.user, Text: "hello, this is a fairly ordinary chat message"}
			before := conns[members-1].n.Load()
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := h.Publish(ctx, sender, m); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if got := conns[members-1].n.Load() - before; got != int64(b.N) {
				b.Fatalf("the last member got %d of %d messages", got, b.N)
			}
			// Every member got the very same frame: encoded once.
			if conns[0].last.Load() != conns[members-1].last.Load() {
				b.Fatal("members got different frames for one message")
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(members), "ns/delivery")
		})
	}
}
