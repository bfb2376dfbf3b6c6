package redisbroker

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// stats are the broker's counters, read by Collect.
type stats struct {
	publishes    atomic.Uint64
	publishNanos atomic.Uint64
	delivered    atomic.Uint64 // messages handed to the hub from pub/sub or catch-up
	caughtUp     atomic.Uint64 // of which read from streams after a (re)subscribe
	duplicates   atomic.Uint64 // pub/sub messages dropped: a catch-up had delivered them
	reconnects   atomic.Uint64
	stalls       atomic.Uint64
	badPayloads  atomic.Uint64
}

var (
	descUp = prometheus.NewDesc("chatd_redis_pubsub_up",
		"Whether this node's pub/sub connection to a Redis shard is up and delivering (1) or not (0).", []string{"shard"}, nil)
	descLag = prometheus.NewDesc("chatd_redis_pubsub_lag_seconds",
		"How far behind a pub/sub connection is: the age of the oldest probe not yet back, or the round trip of the last one.", []string{"shard"}, nil)
	descRooms = prometheus.NewDesc("chatd_redis_subscriptions",
		"Room channels this node is subscribed to on a shard.", []string{"shard"}, nil)
	descReconnects = prometheus.NewDesc("chatd_redis_pubsub_reconnects_total",
		"Pub/sub connections lost and replaced (each followed by a catch-up from the streams).", nil, nil)
	descStalls = prometheus.NewDesc("chatd_redis_pubsub_stalls_total",
		"Pub/sub connections replaced because their probes stopped coming back.", nil, nil)
	descDelivered = prometheus.NewDesc("chatd_redis_messages_received_total",
		"Messages received from Redis and handed to the hub once each.", nil, nil)
	descCaughtUp = prometheus.NewDesc("chatd_redis_catchup_messages_total",
		"Messages read from streams to close the gap after a (re)subscribe.", nil, nil)
	descDuplicates = prometheus.NewDesc("chatd_redis_duplicates_dropped_total",
		"Pub/sub messages dropped because a catch-up had already delivered them.", nil, nil)
	descBad = prometheus.NewDesc("chatd_redis_bad_payloads_total",
		"Pub/sub payloads that could not be decoded.", nil, nil)
)

// Describe implements prometheus.Collector.
func (b *Broker) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descUp, descLag, descRooms, descReconnects, descStalls, descDelivered, descCaughtUp, descDuplicates, descBad} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (b *Broker) Collect(ch chan<- prometheus.Metric) {
	shards := b.shardList()
	for _, sh := range shards {
		name := sh.addr
		if name == "" {
			name = "main"
		}
		up := 1.0
		if sh.health() != nil {
			up = 0
		}
		sh.mu.Lock()
		rooms := 0
		for _, rs := range sh.rooms {
			if rs.wanted {
				rooms++
			}
		}
		sh.mu.Unlock()
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, name)
		ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, sh.lag().Seconds(), name)
		ch <- prometheus.MustNewConstMetric(descRooms, prometheus.GaugeValue, float64(rooms), name)
	}
	counter := func(d *prometheus.Desc, v *atomic.Uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v.Load()))
	}
	counter(descReconnects, &b.stats.reconnects)
	counter(descStalls, &b.stats.stalls)
	counter(descDelivered, &b.stats.delivered)
	counter(descCaughtUp, &b.stats.caughtUp)
	counter(descDuplicates, &b.stats.duplicates)
	counter(descBad, &b.stats.badPayloads)
}

var _ prometheus.Collector = (*Broker)(nil)
