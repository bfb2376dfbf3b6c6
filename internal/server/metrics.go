package server

import (
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/chatd/chatd/internal/protocol"
)

// metrics are the server's Prometheus metrics, on a registry of its own so
// that several servers can live in one process (tests).
type metrics struct {
	reg *prometheus.Registry

	connections   prometheus.Gauge
	connectsTotal prometheus.Counter
	rejections    *prometheus.CounterVec // handshake refusals by reason
	authFailures  *prometheus.CounterVec // by reason
	commands      *prometheus.CounterVec // by type
	// commandsByType and brokerOps are the children of commands and
	// brokerDuration for the labels used on every command, looked up
	// once: WithLabelValues hashes its labels on every call.
	commandsByType map[string]prometheus.Counter
	brokerOps      map[string]prometheus.Observer
	joins          prometheus.Counter
	messagesIn     prometheus.Counter
	queueDrops     prometheus.Counter
	slowConsumers  prometheus.Counter
	rateLimited    *prometheus.CounterVec // by scope
	closes         *prometheus.CounterVec // by close code sent
	brokerDuration *prometheus.HistogramVec
}

func newMetrics(nodeID, version string, deliveries func() float64, rooms func() float64) *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := func(c prometheus.Collector) prometheus.Collector { reg.MustRegister(c); return c }
	labels := prometheus.Labels{"node": nodeID}
	m := &metrics{reg: reg}
	m.connections = f(prometheus.NewGauge(prometheus.GaugeOpts{Name: "chatd_connections", Help: "Open WebSocket connections.", ConstLabels: labels})).(prometheus.Gauge)
	m.connectsTotal = f(prometheus.NewCounter(prometheus.CounterOpts{Name: "chatd_connections_total", Help: "WebSocket connections accepted.", ConstLabels: labels})).(prometheus.Counter)
	m.rejections = f(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chatd_handshake_rejections_total", Help: "Upgrade requests refused, by reason.", ConstLabels: labels}, []string{"reason"})).(*prometheus.CounterVec)
	m.authFailures = f(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chatd_auth_failures_total", Help: "Tokens refused, by reason.", ConstLabels: labels}, []string{"reason"})).(*prometheus.CounterVec)
	m.commands = f(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chatd_commands_total", Help: "Client commands, by type.", ConstLabels: labels}, []string{"type"})).(*prometheus.CounterVec)
	m.joins = f(prometheus.NewCounter(prometheus.CounterOpts{Name: "chatd_joins_total", Help: "Room joins served.", ConstLabels: labels})).(prometheus.Counter)
	m.messagesIn = f(prometheus.NewCounter(prometheus.CounterOpts{Name: "chatd_messages_in_total", Help: "Messages published by clients of this node.", ConstLabels: labels})).(prometheus.Counter)
	m.queueDrops = f(prometheus.NewCounter(prometheus.CounterOpts{Name: "chatd_queue_drops_total", Help: "Typing and presence events dropped for connections that fell behind.", ConstLabels: labels})).(prometheus.Counter)
	m.slowConsumers = f(prometheus.NewCounter(prometheus.CounterOpts{Name: "chatd_slow_consumers_total", Help: "Connections closed with 1013 because their outbound queue filled.", ConstLabels: labels})).(prometheus.Counter)
	m.rateLimited = f(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chatd_rate_limited_total", Help: "Rate-limit denials, by scope (connection, user, command, upgrade, dev_token).", ConstLabels: labels}, []string{"scope"})).(*prometheus.CounterVec)
	m.closes = f(prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chatd_server_closes_total", Help: "Connections closed by the server, by close code.", ConstLabels: labels}, []string{"code"})).(*prometheus.CounterVec)
	m.brokerDuration = f(prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "chatd_broker_duration_seconds", Help: "Broker call latency, by operation.", ConstLabels: labels, Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}, []string{"op"})).(*prometheus.HistogramVec)
	m.commandsByType = map[string]prometheus.Counter{}
	for _, t := range []string{protocol.TypeJoin, protocol.TypeLeave, protocol.TypeSend, protocol.TypeHistory, protocol.TypeTyping, protocol.TypeRefresh, protocol.TypePing} {
		m.commandsByType[t] = m.commands.WithLabelValues(t)
	}
	m.brokerOps = map[string]prometheus.Observer{}
	for _, op := range []string{"join", "publish", "history"} {
		m.brokerOps[op] = m.brokerDuration.WithLabelValues(op)
	}
	f(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "chatd_deliveries_total", Help: "Messages queued to local connections (messages out).", ConstLabels: labels}, deliveries))
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "chatd_rooms", Help: "Rooms with members on this node.", ConstLabels: labels}, rooms))
	// The usual build-info gauge, always 1: which build each node runs,
	// to be joined onto other series during a rolling upgrade.
	if version == "" {
		version = "unknown"
	}
	build := f(prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "chatd_build_info", Help: "Always 1; its labels say which build this node runs.", ConstLabels: labels}, []string{"version", "go_version"})).(*prometheus.GaugeVec)
	build.WithLabelValues(version, runtime.Version()).Set(1)
	return m
}

// command counts a command of type typ.
func (m *metrics) command(typ string) {
	if c, ok := m.commandsByType[typ]; ok {
		c.Inc()
		return
	}
	m.commands.WithLabelValues(typ).Inc()
}

// brokerOp records the duration of a broker call for op.
func (m *metrics) brokerOp(op string, d time.Duration) {
	o, ok := m.brokerOps[op]
	if !ok {
		o = m.brokerDuration.WithLabelValues(op)
	}
	o.Observe(d.Seconds())
}
