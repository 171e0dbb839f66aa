// Package metrics serves a worker's metrics for Prometheus: the Temporal SDK's (through its
// client.MetricsHandler) and Skein's own (skein_*, emitted by the workflows through the same
// handler), with /healthz and /readyz beside /metrics.
//
// The SDK's tally contrib module is not served by the module proxy this project builds from, so
// the handler is written here on the Prometheus client: every series is kept with its own tags and
// exported at scrape time, each metric family with the union of the label names its series use
// (missing ones empty), as Prometheus requires.
package metrics

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.temporal.io/sdk/client"
)

// Handler is a client.MetricsHandler that keeps its series for a Prometheus registry.
type Handler struct {
	store *store
	tags  map[string]string
}

// NewHandler returns a handler whose series the registry exports.
func NewHandler(reg *prometheus.Registry) *Handler {
	s := &store{series: map[string]*series{}}
	reg.MustRegister(s)
	return &Handler{store: s, tags: map[string]string{}}
}

// WithTags implements client.MetricsHandler.
func (h *Handler) WithTags(tags map[string]string) client.MetricsHandler {
	merged := maps.Clone(h.tags)
	maps.Copy(merged, tags)
	return &Handler{store: h.store, tags: merged}
}

// Counter implements client.MetricsHandler.
func (h *Handler) Counter(name string) client.MetricsCounter {
	return counterFunc(func(d int64) { h.store.add(name, h.tags, kindCounter, float64(d)) })
}

// Gauge implements client.MetricsHandler.
func (h *Handler) Gauge(name string) client.MetricsGauge {
	return gaugeFunc(func(v float64) { h.store.set(name, h.tags, v) })
}

// Timer implements client.MetricsHandler: a histogram in seconds.
func (h *Handler) Timer(name string) client.MetricsTimer {
	return timerFunc(func(d time.Duration) { h.store.observe(name, h.tags, d.Seconds()) })
}

type counterFunc func(int64)

func (f counterFunc) Inc(d int64) { f(d) }

type gaugeFunc func(float64)

func (f gaugeFunc) Update(v float64) { f(v) }

type timerFunc func(time.Duration)

func (f timerFunc) Record(d time.Duration) { f(d) }

type kind int

const (
	kindCounter kind = iota
	kindGauge
	kindHistogram
)

// buckets of timers, in seconds.
var buckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300}

type series struct {
	name   string
	kind   kind
	labels map[string]string
	value  float64  // counter or gauge
	counts []uint64 // histogram: per bucket (not cumulative)
	count  uint64
	sum    float64
}

type store struct {
	mu     sync.Mutex
	series map[string]*series // by name and sorted labels
}

func seriesKey(name string, labels map[string]string) string {
	keys := slices.Sorted(maps.Keys(labels))
	var b strings.Builder
	b.WriteString(name)
	for _, k := range keys {
		b.WriteString("\x00" + k + "=" + labels[k])
	}
	return b.String()
}

// get returns the series of name and labels, created with kind k.
func (s *store) get(name string, labels map[string]string, k kind) *series {
	key := seriesKey(name, labels)
	sr := s.series[key]
	if sr == nil {
		sr = &series{name: sanitize(name), kind: k, labels: maps.Clone(labels)}
		if k == kindHistogram {
			sr.counts = make([]uint64, len(buckets))
		}
		s.series[key] = sr
	}
	return sr
}

func (s *store) add(name string, labels map[string]string, k kind, d float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.get(name, labels, k).value += d
}

func (s *store) set(name string, labels map[string]string, v float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.get(name, labels, kindGauge).value = v
}

func (s *store) observe(name string, labels map[string]string, v float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sr := s.get(name, labels, kindHistogram)
	sr.count++
	sr.sum += v
	if i := sort.SearchFloat64s(buckets, v); i < len(buckets) {
		sr.counts[i]++
	}
}

// Describe implements prometheus.Collector: an unchecked collector (its families are known at
// scrape time only).
func (s *store) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (s *store) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The label names of each family: the union over its series.
	names := map[string][]string{}
	kinds := map[string]kind{}
	for _, sr := range s.series {
		for k := range sr.labels {
			if !slices.Contains(names[sr.name], sanitize(k)) {
				names[sr.name] = append(names[sr.name], sanitize(k))
			}
		}
		if _, ok := kinds[sr.name]; !ok {
			kinds[sr.name] = sr.kind
		}
	}
	for _, sr := range s.series {
		if sr.kind != kinds[sr.name] {
			continue // one name used as two kinds: the first wins
		}
		labelNames := slices.Sorted(slices.Values(names[sr.name]))
		values := make([]string, len(labelNames))
		for i, n := range labelNames {
			for k, v := range sr.labels {
				if sanitize(k) == n {
					values[i] = v
				}
			}
		}
		desc := prometheus.NewDesc(sr.name, sr.name, labelNames, nil)
		var m prometheus.Metric
		var err error
		switch sr.kind {
		case kindCounter:
			m, err = prometheus.NewConstMetric(desc, prometheus.CounterValue, sr.value, values...)
		case kindGauge:
			m, err = prometheus.NewConstMetric(desc, prometheus.GaugeValue, sr.value, values...)
		case kindHistogram:
			cum := map[float64]uint64{}
			var running uint64
			for i, b := range buckets {
				running += sr.counts[i]
				cum[b] = running
			}
			m, err = prometheus.NewConstHistogram(desc, sr.count, sr.sum, cum, values...)
		}
		if err == nil {
			ch <- m
		}
	}
}

// sanitize makes a metric or label name valid for Prometheus.
func sanitize(name string) string {
	var b strings.Builder
	for i, r := range name {
		ok := r == '_' || r == ':' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9')
		if ok {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// Addr is the address the server listens on (a port chosen for ":0").
func (s *Server) Addr() string { return s.addr }

// Server serves /metrics, /healthz (the process runs) and /readyz (its Temporal connection
// answers: ready reports nil).
type Server struct {
	srv  *http.Server
	addr string
}

// Serve starts the server on addr in the background.
func Serve(addr string, reg *prometheus.Registry, ready func(context.Context) error) (*Server, error) {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	s := &Server{srv: &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s.addr = ln.Addr().String()
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() error {
	err := s.srv.Close()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
