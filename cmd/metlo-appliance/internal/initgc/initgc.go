// Package initgc keeps the garbage collector off while the program's packages initialise.
//
// The one binary links the cloud SDKs that provisioning needs. Their package initialisers
// allocate about 5 MB (the Compute API's protobuf descriptors alone 2.5 MB), more than the
// 4 MB at which the runtime starts its first collection, so every start of the binary —
// `--version` and `collect --pcap` alike — paid for a collection that scans ~5 MB of
// globals and faults their pages in: a quarter to a third of the start-up time.
//
// Go initialises a package as soon as everything it imports is initialised, taking the
// lowest import path first among those ready. This package imports only runtime/debug, so
// it runs before most SDK initialisers (about 2 MB of allocations, mostly AWS service
// schemas, come before it; the first collection starts near 4 MB).
// main calls Restore before a command runs; TestStartupDoesNotCollect guards the order.
package initgc

import "runtime/debug"

// percent is the collector setting (GOGC, 100 by default) in force before init turned the
// collector off.
var percent = debug.SetGCPercent(-1)

// Restore turns the collector back on with the setting the process started with. It is
// idempotent, and must run before any long-lived work: until then nothing is collected.
func Restore() {
	debug.SetGCPercent(percent)
}
