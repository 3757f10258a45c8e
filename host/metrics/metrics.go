// Package metrics holds the host's Prometheus metrics: calls by connector,
// capability and outcome, call latency, errors by code, plugin restarts.
package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is the host's metric set, on its own registry.
type Metrics struct {
	registry *prometheus.Registry
	calls    *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	errors   *prometheus.CounterVec
	restarts *prometheus.CounterVec
	plugins  *prometheus.GaugeVec

	// succeeded caches, per connector and capability, the series a
	// successful call updates (callKey → *callSeries), so that the common
	// case skips the vectors' label hashing and lookups. Label values are
	// bounded (the router reports unknown capabilities as "unknown").
	succeeded sync.Map
}

type callKey struct{ appID, capability string }

type callSeries struct {
	calls   prometheus.Counter
	latency prometheus.Observer
}

// New returns the metric set, registered with Go and process collectors.
func New() *Metrics {
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "connector_host_requests_total",
			Help: "Capability calls by connector, capability and outcome (ok or the error code).",
		}, []string{"app_id", "capability", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "connector_host_request_duration_seconds",
			Help:    "Capability call latency through the host, by connector and capability.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"app_id", "capability"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "connector_host_errors_total",
			Help: "Failed capability calls by connector and error code.",
		}, []string{"app_id", "code"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "connector_host_plugin_restarts_total",
			Help: "Plugin process restarts after a crash or failed health check.",
		}, []string{"app_id"}),
		plugins: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "connector_host_plugin_up",
			Help: "1 when the plugin is ready, else 0.",
		}, []string{"app_id"}),
	}
	m.registry.MustRegister(m.calls, m.latency, m.errors, m.restarts, m.plugins,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveCall records one finished call; code is "" on success.
func (m *Metrics) ObserveCall(appID, capability, code string, d time.Duration) {
	if code != "" {
		m.errors.WithLabelValues(appID, code).Inc()
		m.calls.WithLabelValues(appID, capability, code).Inc()
		m.latency.WithLabelValues(appID, capability).Observe(d.Seconds())
		return
	}
	key := callKey{appID, capability}
	v, ok := m.succeeded.Load(key)
	if !ok {
		v, _ = m.succeeded.LoadOrStore(key, &callSeries{
			calls:   m.calls.WithLabelValues(appID, capability, "ok"),
			latency: m.latency.WithLabelValues(appID, capability),
		})
	}
	cs := v.(*callSeries)
	cs.calls.Inc()
	cs.latency.Observe(d.Seconds())
}

// PluginRestarted records a restart of appID's plugin.
func (m *Metrics) PluginRestarted(appID string) { m.restarts.WithLabelValues(appID).Inc() }

// SetPluginUp records whether appID's plugin is ready.
func (m *Metrics) SetPluginUp(appID string, up bool) {
	v := 0.0
	if up {
		v = 1
	}
	m.plugins.WithLabelValues(appID).Set(v)
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{})
}
