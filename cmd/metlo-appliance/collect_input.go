package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"
)

// captureFile is an offline run's input, opened before anything else runs so that a
// mistake in its name is the first and only thing the run prints.
type captureFile struct {
	name string // the path, or "standard input"
	f    *os.File
	size int64 // -1 when unknown (standard input, a pipe)
	read atomic.Int64
}

// Read counts the bytes read, for the progress line's share of the file.
func (c *captureFile) Read(p []byte) (int, error) {
	n, err := c.f.Read(p)
	c.read.Add(int64(n))
	return n, err
}

func (c *captureFile) Close() error {
	if c.f == os.Stdin {
		return nil
	}
	return c.f.Close()
}

// openCapture opens --pcap: a missing path or a directory is a usage error, an empty file
// an error naming it.
func openCapture(path string) (*captureFile, error) {
	if path == "-" {
		return &captureFile{name: "standard input", f: os.Stdin, size: -1}, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, configError(fmt.Errorf("capture file %s does not exist", path))
	}
	if err != nil {
		return nil, fmt.Errorf("open capture file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open capture file: %w", err)
	}
	size := st.Size()
	switch {
	case st.IsDir():
		f.Close()
		return nil, configError(fmt.Errorf("capture file %s is a directory", path))
	case !st.Mode().IsRegular():
		size = -1 // a FIFO or device: read it, without a share
	case size == 0:
		f.Close()
		return nil, fmt.Errorf("capture file %s is empty: nothing to read", path)
	}
	return &captureFile{name: path, f: f, size: size}, nil
}

// checkInterface fails when the interface named for live capture does not exist, listing
// the ones that do — before the collector logs or opens anything.
func checkInterface(name string) error {
	if _, err := net.InterfaceByName(name); err == nil {
		return nil
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return configError(fmt.Errorf("interface %q not found: %w", name, err))
	}
	names := make([]string, 0, len(ifs))
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	sort.Strings(names)
	return configError(fmt.Errorf("interface %q does not exist on this host (interfaces: %s)", name, strings.Join(names, ", ")))
}

// terminalWidth is w's width in columns when w is a terminal (the progress line redraws
// itself there), else 0.
func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0
	}
	if cols, _, err := term.GetSize(int(f.Fd())); err == nil && cols > 0 {
		return cols
	}
	return 80
}

// tracesOnTerminal says whether a sink writes traces to stdout and stdout is a terminal:
// the traces scrolling by are then the run's progress, and a progress line redrawn on the
// same screen would be torn apart by them.
func tracesOnTerminal(sinks []string, stdout io.Writer) bool {
	return slices.Contains(sinks, "jsonl:-") && terminalWidth(stdout) > 0
}

// terminal serialises a progress line and log lines on one terminal: a log line first
// clears the progress line, which the next tick redraws.
type terminal struct {
	mu    sync.Mutex
	w     io.Writer
	width int  // columns: a longer line would wrap and not be redrawn in place
	drawn bool // a progress line is on screen
}

func (t *terminal) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.clearLocked()
	return t.w.Write(p)
}

func (t *terminal) clearLocked() {
	if t.drawn {
		io.WriteString(t.w, "\r\x1b[K")
		t.drawn = false
	}
}

// draw replaces the progress line.
func (t *terminal) draw(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r := []rune(line); t.width > 1 && len(r) >= t.width {
		line = string(r[:t.width-1])
	}
	io.WriteString(t.w, "\r\x1b[K"+line)
	t.drawn = true
}

// clear removes the progress line for good.
func (t *terminal) clear() {
	t.mu.Lock()
	t.clearLocked()
	t.mu.Unlock()
}

// progressInterval is how often the progress line is redrawn (a variable for tests).
var progressInterval = 250 * time.Millisecond

// progressReading is what the progress line shows besides the file's share.
type progressReading struct{ packets, exchanges uint64 }

// showProgress redraws a progress line on t every interval until ctx ends: bytes read
// and the share of the file, packets, exchanges, rate and time left.
func showProgress(ctx context.Context, t *terminal, in *captureFile, interval time.Duration, read func() progressReading) {
	start := time.Now()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		// Drawn at once: the run is under way from its first moment.
		t.draw(progressLine(filepath.Base(in.name), in.read.Load(), in.size, read(), time.Since(start)))
		select {
		case <-ctx.Done():
			t.clear()
			return
		case <-tick.C:
		}
	}
}

// progressLine formats one reading: "mirror.pcap  43%  1.2 GB of 2.8 GB  1234567 packets
// 45678 exchanges  120.5 MB/s  0:13 left".
func progressLine(name string, done, size int64, r progressReading, el time.Duration) string {
	rate := float64(done) / max(el.Seconds(), 1e-3)
	var b strings.Builder
	b.WriteString(name)
	if size > 0 {
		fmt.Fprintf(&b, "  %3.0f%%  %s of %s", 100*float64(done)/float64(size), humanBytes(done), humanBytes(size))
	} else {
		fmt.Fprintf(&b, "  %s", humanBytes(done))
	}
	fmt.Fprintf(&b, "  %d packets  %d exchanges  %s/s", r.packets, r.exchanges, humanBytes(int64(rate)))
	if size > 0 && done > 0 && done < size {
		left := time.Duration(float64(size-done) / rate * float64(time.Second)).Round(time.Second)
		fmt.Fprintf(&b, "  %d:%02d left", int(left.Minutes()), int(left.Seconds())%60)
	}
	return b.String()
}

func humanBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}
