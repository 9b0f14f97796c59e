package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// notifier tells systemd (Type=notify) when the collector is ready, what it is doing, that
// it is stopping, and — with WatchdogSec= — that it is still alive. Without NOTIFY_SOCKET
// (not started by systemd) every call does nothing.
type notifier struct{ log *slog.Logger }

func (n notifier) send(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		n.log.Debug("sd_notify failed", "state", state, "err", err)
	}
}

// ready reports the capture open: systemd starts units ordered after the collector, and
// `systemctl start` returns, only now.
func (n notifier) ready(status string) { n.send(daemon.SdNotifyReady + "\nSTATUS=" + status) }

// status is the line `systemctl status` shows.
func (n notifier) status(s string) { n.send("STATUS=" + s) }

// stopping reports an orderly shutdown (queued traces are being delivered).
func (n notifier) stopping() {
	n.send(daemon.SdNotifyStopping + "\nSTATUS=stopping: delivering queued traces")
}

// watchdog pings systemd at half its WatchdogSec while alive() holds, until ctx ends. The
// ping comes from a goroutine that first takes alive()'s reading of the pipeline, so a
// process whose scheduler or stats locks are wedged misses it and systemd aborts and
// restarts it (the abort leaves every goroutine's stack in the journal).
func (n notifier) watchdog(ctx context.Context, alive func() bool) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		if alive() {
			n.send(daemon.SdNotifyWatchdog)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
