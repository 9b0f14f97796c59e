package xdp

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// Errors Open returns (wrapped, test with errors.Is) so a caller can fall back from native to
// generic XDP and from XDP to AF_PACKET, saying once why.
var (
	// ErrPermission means the process may not load BPF programs or attach them
	// (needs root, or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON).
	ErrPermission = errors.New("not permitted to load or attach xdp")
	// ErrKernelTooOld means the kernel lacks ring buffers, XDP frags or
	// bpf_xdp_load_bytes (Linux 5.18+ is required).
	ErrKernelTooOld = errors.New("kernel too old for xdp capture (needs linux 5.18+)")
	// ErrNativeUnsupported means the driver refused native (driver-mode) XDP; generic
	// mode usually still works.
	ErrNativeUnsupported = errors.New("driver refuses native xdp")
	// ErrMTUTooLarge means the driver cannot run XDP at the interface's MTU (no
	// multi-buffer XDP support); lower the MTU or use generic mode.
	ErrMTUTooLarge = errors.New("interface mtu too large for xdp on this driver")
	// ErrBusy means another XDP program is already attached to the interface.
	ErrBusy = errors.New("another xdp program is attached")
	// ErrNoInterface means the configured interface does not exist.
	ErrNoInterface = errors.New("no such interface")
)

// classifyLoad maps a load failure to one of the errors above when the cause is clear.
func classifyLoad(err error) error {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("%w: %w", ErrPermission, err)
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("%w: %w", ErrKernelTooOld, err)
	}
	return err
}

// classifyAttach maps a link.AttachXDP failure in mode to one of the errors above.
func classifyAttach(err error, mode Mode, mtu int) error {
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("%w: %w", ErrPermission, err)
	case errors.Is(err, unix.EBUSY), errors.Is(err, unix.EEXIST):
		return fmt.Errorf("%w: %w", ErrBusy, err)
	case errors.Is(err, unix.ERANGE):
		return fmt.Errorf("%w (mtu %d, %s mode): %w", ErrMTUTooLarge, mtu, mode, err)
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("%w: %w", ErrKernelTooOld, err)
	case mode == ModeNative && (errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)):
		return fmt.Errorf("%w: %w", ErrNativeUnsupported, err)
	}
	return err
}
