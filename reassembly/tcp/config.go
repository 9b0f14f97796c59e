package tcp

import "time"

// Config bounds what one Assembler may hold; zero fields take the defaults.
type Config struct {
	MaxFlows        int           // flows tracked; the least recently seen is evicted beyond it
	FlowBufferBytes int           // out-of-order bytes buffered per direction before the hole is declared a gap
	IdleTimeout     time.Duration // flows silent this long are closed and forgotten
	ReorderTimeout  time.Duration // out-of-order data waits this long for the missing bytes
}

// DefaultConfig returns the limits used when a Config field is zero.
func DefaultConfig() Config {
	return Config{
		MaxFlows:        1 << 20,
		FlowBufferBytes: 1 << 20,
		IdleTimeout:     2 * time.Minute,
		ReorderTimeout:  time.Second,
	}
}

// WithDefaults returns c with every zero (or negative) field set to its default.
func (c Config) WithDefaults() Config {
	d := DefaultConfig()
	orDefault(&c.MaxFlows, d.MaxFlows)
	orDefault(&c.FlowBufferBytes, d.FlowBufferBytes)
	orDefault(&c.IdleTimeout, d.IdleTimeout)
	orDefault(&c.ReorderTimeout, d.ReorderTimeout)
	c.FlowBufferBytes = min(c.FlowBufferBytes, maxFlowBufferBytes)
	return c
}

// maxFlowBufferBytes caps the per-direction buffer (its count is kept in 32 bits).
const maxFlowBufferBytes = 1 << 30

// orDefault sets *v to def when it is zero or negative.
func orDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
