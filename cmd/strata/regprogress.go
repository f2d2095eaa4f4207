package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/strata-dev/strata/transfer/registry"
	"golang.org/x/term"
)

// statusLines prints a pull's or push's per-layer status as docker's CLI
// prints its JSON messages: on a terminal one line per layer, rewritten in
// place (with a bar while bytes move); elsewhere a plain line for each
// change of status, and none for those with a bar, as docker's CLI drops
// progress messages when it does not write to a terminal.
type statusLines struct {
	w     io.Writer
	tty   bool
	quiet bool

	mu    sync.Mutex
	order []string       // layer IDs, in the order their lines were drawn
	last  map[string]int // ID -> index in order
	seen  map[string]string
	drawn map[string]time.Time
}

func newStatusLines(w io.Writer, quiet bool) *statusLines {
	f, ok := w.(*os.File)
	return &statusLines{w: w, quiet: quiet, tty: ok && term.IsTerminal(int(f.Fd())),
		last: map[string]int{}, seen: map[string]string{}, drawn: map[string]time.Time{}}
}

// line prints a line that belongs to no layer ("Digest: …").
func (s *statusLines) line(format string, args ...any) {
	if s.quiet {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprintf(s.w, format+"\n", args...)
	// A line below the layers: they can no longer be rewritten in place.
	s.order = nil
	s.last = map[string]int{}
}

// event shows one layer's status.
func (s *statusLines) event(e registry.Event) {
	if s.quiet {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	text := e.ID + ": " + e.Status
	if e.Total > 0 {
		if !s.tty {
			// As docker's CLI: a status with a bar (Downloading,
			// Extracting, Pushing) is not shown without a terminal.
			return
		}
		if s.seen[e.ID] == e.Status && time.Since(s.drawn[e.ID]) < 100*time.Millisecond && e.Current < e.Total {
			return
		}
		text += " " + bar(e.Current, e.Total)
	}
	s.seen[e.ID] = e.Status
	s.drawn[e.ID] = time.Now()
	if !s.tty {
		fmt.Fprintln(s.w, text)
		return
	}
	i, ok := s.last[e.ID]
	if !ok {
		s.last[e.ID] = len(s.order)
		s.order = append(s.order, e.ID)
		fmt.Fprintf(s.w, "\x1b[2K%s\n", text)
		return
	}
	up := len(s.order) - i
	fmt.Fprintf(s.w, "\x1b[%dA\r\x1b[2K%s\r\x1b[%dB", up, text, up)
}

// bar is docker's progress bar: [====>     ] 12.3MB/45.6MB.
func bar(cur, total int64) string {
	const width = 50
	n := int(cur * width / total)
	n = min(max(n, 0), width)
	b := strings.Repeat("=", n)
	if n < width {
		b += ">" + strings.Repeat(" ", width-n-1)
	}
	return fmt.Sprintf("[%s]  %s/%s", b, humanSize(cur, 3), humanSize(total, 3))
}

// registryFlags are the flags every registry command takes.
type registryFlags struct {
	insecure []string
}

func (r *registryFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringSliceVar(&r.insecure, "insecure-registry", nil, "allow plain HTTP and unverified TLS for this registry (host[:port]); also \"insecure-registries\" in $STRATA_CONFIG/registries.json")
}

func (r *registryFlags) client(g *globals) (*registry.Client, error) {
	return registry.New(registry.Options{Insecure: r.insecure, Logger: g.logger()})
}
