package main

import "testing"

func TestMemoryLimitSplitsIntoTheBudgets(t *testing.T) {
	c := defaultConfig()
	c.MemoryLimit = 1 << 30
	c.QueueBytes = 7 << 20 // set explicitly: kept
	if src := c.resolveMemory(); src != "memory-limit" {
		t.Fatalf("source %q", src)
	}
	lim := float64(c.MemoryLimit)
	if c.BufferBytes != int(lim*reassemblyShare) || c.QueueBytes != 7<<20 || c.MetloQueueBytes != int64(lim*metloQueueShare) {
		t.Fatalf("buffer %d queue %d metlo queue %d", c.BufferBytes, c.QueueBytes, c.MetloQueueBytes)
	}
	d := defaultConfig()
	if src := d.resolveMemory(); d.MemoryLimit <= 0 || d.BufferBytes <= 0 || src == "" {
		t.Fatalf("derived limit %d buffer %d from %q", d.MemoryLimit, d.BufferBytes, src)
	}
}
