package bench

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// loadSampler reads the 1-minute load average at a fixed interval for the
// whole run, so that a row measured while others loaded the machine can
// be told from one that was not (the load at a run's ends says little
// about its middle).
type loadSampler struct {
	mu      sync.Mutex
	at      []time.Time
	v       []float64
	done    chan struct{}
	stopped sync.Once
}

func startLoadSampler(every time.Duration) *loadSampler {
	s := &loadSampler{done: make(chan struct{})}
	s.sample()
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				s.sample()
			case <-s.done:
				return
			}
		}
	}()
	return s
}

func (s *loadSampler) sample() {
	v, ok := load1()
	if !ok {
		return
	}
	s.mu.Lock()
	s.at = append(s.at, time.Now())
	s.v = append(s.v, v)
	s.mu.Unlock()
}

func (s *loadSampler) stop() { s.stopped.Do(func() { close(s.done) }) }

// maxSince is the highest load sampled since t, the current one included.
func (s *loadSampler) maxSince(t time.Time) float64 {
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	m := 0.0
	for i := len(s.at) - 1; i >= 0 && !s.at[i].Before(t); i-- {
		m = max(m, s.v[i])
	}
	return m
}

// series returns every sample and the highest.
func (s *loadSampler) series() ([]float64, float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := 0.0
	for _, v := range s.v {
		m = max(m, v)
	}
	return append([]float64(nil), s.v...), m
}

// load1 is the 1-minute load average.
func load1() (float64, bool) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	return v, err == nil
}
