package cluster_test

import (
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/chatd/chatd/internal/hub/redisbroker/redistest"
)

// BenchmarkCrossNodeFanout measures messages through Redis between
// nodes: three chatd nodes on one Redis, 10 members of one room on each,
// and three senders per node, each sending its next message as soon as
// the previous one is acknowledged (so latency is the path's, not a queue
// of unsent commands).
// Every message goes client → node → Redis (publish script) → every node
// (pub/sub) → 30 WebSocket clients. It reports messages per second,
// deliveries per second, and the latency from send to receipt on another
// node's client (p50, p99).
//
//	go test -run '^$' -bench CrossNodeFanout -benchtime 6000x ./internal/cluster/
func BenchmarkCrossNodeFanout(b *testing.B) {
	for _, mode := range []struct {
		name    string
		cluster bool
	}{{"standalone", false}, {"cluster", true}} {
		b.Run(mode.name, func(b *testing.B) {
			var url string
			if mode.cluster {
				url = redistest.StartCluster(b).URL()
			} else {
				url = redistest.Start(b).URL()
			}
			benchFanout(b, url, mode.cluster)
		})
	}
}

func benchFanout(b *testing.B, url string, isCluster bool) {
	const perNode = 10
	nodes := startNodes(b, url, isCluster, 3, clusterOpts{sendRate: 1e7, quiet: true})
	var senders, members []*client
	for i, nd := range nodes {
		for j := range 3 {
			s := dial(b, nd, fmt.Sprintf("sender%d-%d", i, j))
			s.join("bench", "")
			senders = append(senders, s)
		}
		for j := range perNode {
			c := dial(b, nd, fmt.Sprintf("m%d-%d", i, j))
			c.join("bench", "")
			members = append(members, c)
		}
	}
	// Let presence events settle: they are not what is measured.
	time.Sleep(200 * time.Millisecond)
	for _, c := range append(senders, members...) {
		for len(c.events) > 0 {
			<-c.events
		}
	}

	total := b.N - b.N%len(senders)
	if total == 0 {
		total = len(senders)
	}
	var wg sync.WaitGroup
	latencies := make([][]time.Duration, len(members))
	errs := make(chan error, len(members))
	b.ResetTimer()
	start := time.Now()
	for i, c := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got := 0
			record := i%perNode == 0 // one member per node records latency
			for got < total {
				select {
				case e := <-c.events:
					if e.str("type") != "message" {
						continue
					}
					got++
					if record {
						if sent, err := strconv.ParseInt(e.str("text"), 10, 64); err == nil {
							latencies[i] = append(latencies[i], time.Since(time.Unix(0, sent)))
						}
					}
				case <-time.After(wait):
					errs <- fmt.Errorf("%s: %d of %d messages", c.user, got, total)
					return
				}
			}
		}()
	}
	for _, s := range senders {
		go func() {
			for range total / len(senders) {
				s.send(map[string]any{"type": "send", "room": "bench", "text": strconv.FormatInt(time.Now().UnixNano(), 10)})
				for e := range s.events {
					if e.str("type") == "sent" || e.str("type") == "error" {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	var all []time.Duration
	for _, l := range latencies {
		all = append(all, l...)
	}
	slices.Sort(all)
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[min(int(p*float64(len(all))), len(all)-1)].Microseconds()) / 1000
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(total*len(members))/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}
