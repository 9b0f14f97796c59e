package xdp

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// BPF ring buffer record header bits (kernel/bpf/ringbuf.c).
const (
	ringBusyBit    = 1 << 31
	ringDiscardBit = 1 << 30
	ringHdrSize    = 8
)

// ringReader reads one BPF ring buffer where the kernel wrote it: records are handed on in
// place (no copy) and the space they held is given back in batches, not record by record.
// The layout is the kernel's: a consumer page (read-write), then a producer page and the
// data pages mapped twice in a row, so a record that wraps around is still contiguous.
type ringReader struct {
	fd      int    // the ring buffer map's fd: readable (poll) when data is available
	wake    int    // eventfd that interrupts poll for stop
	cons    []byte // consumer page
	prod    []byte // producer page + 2 × data
	consPos *uint64
	prodPos *uint64
	data    []byte
	mask    uint64
	size    int
}

func newRingReader(m *ebpf.Map) (*ringReader, error) {
	size := int(m.MaxEntries())
	if size == 0 || size&(size-1) != 0 {
		return nil, fmt.Errorf("ring buffer size %d is not a power of two", size)
	}
	page := os.Getpagesize()
	fd := m.FD()
	cons, err := unix.Mmap(fd, 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map ring consumer page: %w", err)
	}
	prod, err := unix.Mmap(fd, int64(page), page+2*size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		unix.Munmap(cons)
		return nil, fmt.Errorf("map ring data: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Munmap(cons)
		unix.Munmap(prod)
		return nil, fmt.Errorf("create ring wake-up fd: %w", err)
	}
	return &ringReader{
		fd: fd, wake: wake, cons: cons, prod: prod,
		consPos: (*uint64)(unsafe.Pointer(&cons[0])),
		prodPos: (*uint64)(unsafe.Pointer(&prod[0])),
		data:    prod[page:],
		mask:    uint64(size - 1),
		size:    size,
	}, nil
}

// next returns the record at cons and where the one after it starts; ok is false when no
// committed record is there (the ring is empty up to prod, or the producer is still
// writing). A discarded record comes back with a nil sample.
func (r *ringReader) next(cons, prod uint64) (sample []byte, after uint64, ok bool) {
	if prod-cons < ringHdrSize {
		return nil, cons, false
	}
	// The length word is written last by the kernel (xchg): loading it atomically orders
	// the reads of the record after it.
	hdr := atomic.LoadUint32((*uint32)(unsafe.Pointer(&r.data[cons&r.mask])))
	if hdr&ringBusyBit != 0 {
		return nil, cons, false
	}
	n := uint64(hdr &^ (ringBusyBit | ringDiscardBit))
	after = cons + ringHdrSize + (n+7)&^7
	if after-cons > uint64(r.size) || after > prod {
		return nil, cons, false // cannot happen with a sane kernel; treat as not yet there
	}
	if hdr&ringDiscardBit != 0 {
		return nil, after, true
	}
	start := (cons + ringHdrSize) & r.mask
	return r.data[start : start+n : start+n], after, true
}

// release gives the ring space up to cons back to the producer.
func (r *ringReader) release(cons uint64) { atomic.StoreUint64(r.consPos, cons) }

// producer is the kernel's write position.
func (r *ringReader) producer() uint64 { return atomic.LoadUint64(r.prodPos) }

// consumer is the read position last released.
func (r *ringReader) consumer() uint64 { return atomic.LoadUint64(r.consPos) }

// available is how many bytes the ring holds unread.
func (r *ringReader) available() int { return int(r.producer() - r.consumer()) }

// wait blocks until the ring has data, timeout passes (< 0: no timeout) or interrupt is
// called. It reports whether it was interrupted.
func (r *ringReader) wait(timeout time.Duration) (bool, error) {
	ms := -1
	if timeout >= 0 {
		ms = int((timeout + time.Millisecond - 1) / time.Millisecond)
	}
	fds := []unix.PollFd{{Fd: int32(r.fd), Events: unix.POLLIN}, {Fd: int32(r.wake), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("poll ring: %w", err)
		}
		return fds[1].Revents&unix.POLLIN != 0, nil
	}
}

// interrupt wakes a wait, now or the next time one starts.
func (r *ringReader) interrupt() {
	var one [8]byte
	one[0] = 1
	_, _ = unix.Write(r.wake, one[:])
}

// close unmaps the ring; no sample handed out may be used afterwards.
func (r *ringReader) close() error {
	return errors.Join(unix.Munmap(r.cons), unix.Munmap(r.prod), unix.Close(r.wake))
}
