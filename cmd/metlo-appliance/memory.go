package main

import "github.com/metlo-labs/metlo-appliance/datapath/sysmem"

// The shares of memory-limit that the budgets not set explicitly get. What is left (about
// a third) is the runtime's headroom: garbage not yet collected, goroutine stacks, the
// exchanges in flight between the stages, buffers of the capture sources.
const (
	reassemblyShare = 0.40 // buffer-bytes: connections, waiting requests, bodies, out-of-order data
	intakeShare     = 0.15 // queue-bytes: exchanges waiting to be encoded
	metloQueueShare = 0.10 // metlo-queue-bytes: traces waiting for the backend without a spool
)

// memory shares of what the machine or the service's cgroup allows, when memory-limit is 0.
const (
	cgroupShare   = 0.75 // of the cgroup's limit (the unit's MemoryMax)
	physicalShare = 0.50 // of the machine's memory when no cgroup limit applies
)

// resolveMemory fills memory-limit when it is 0 (from the cgroup limit, else physical
// memory) and derives every byte budget left at 0 from it. It returns where the limit
// came from, for the log and `config`.
func (c *Config) resolveMemory() string {
	source := "memory-limit"
	if c.MemoryLimit == 0 {
		if lim, path := sysmem.CgroupLimit(); lim > 0 {
			c.MemoryLimit, source = int64(float64(lim)*cgroupShare), "75% of the cgroup limit "+path
		} else if total := sysmem.Physical(); total > 0 {
			c.MemoryLimit, source = int64(float64(total)*physicalShare), "50% of physical memory"
		} else {
			c.MemoryLimit, source = 1<<30, "built-in 1 GiB (memory size unknown)"
		}
	}
	share := func(f float64) int64 { return max(int64(float64(c.MemoryLimit)*f), 1<<20) }
	if c.BufferBytes == 0 {
		c.BufferBytes = int(share(reassemblyShare))
	}
	if c.QueueBytes == 0 {
		c.QueueBytes = share(intakeShare)
	}
	if c.MetloQueueBytes == 0 {
		c.MetloQueueBytes = share(metloQueueShare)
	}
	return source
}
