package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes. A usage or configuration error has its own status (from sysexits.h), apart
// from 1 and from the 2 a Go panic or runtime crash exits with, so systemd's
// RestartPreventExitStatus= can name them: restarting a collector whose command line or
// configuration is wrong helps nothing, restarting one that crashed does.
const (
	exitFailure = 1  // a runtime failure: the capture, the backend, a damaged input…
	exitDropped = 3  // offline run: traces were dropped or shed (the summary says why, per sink)
	exitSpooled = 4  // offline run: nothing dropped, but traces wait in the spool for the next run
	exitUsage   = 64 // EX_USAGE: the command line is wrong (unknown flag or command, a flag value of the wrong kind)
	exitConfig  = 78 // EX_CONFIG: the configuration is wrong (a bad value from any source, inputs that exclude each other, a named file or interface that does not exist)
)

// exitError carries a process exit code through cobra to main.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// ExitCode is the status the process exits with.
func (e *exitError) ExitCode() int { return e.code }

// usageError marks err as a command-line mistake (exit status 64).
func usageError(err error) error { return &exitError{exitUsage, err} }

// configError marks err as a configuration mistake (exit status 78).
func configError(err error) error { return &exitError{exitConfig, err} }

// exitCode is the process status for err (nil: 0).
func exitCode(err error) int {
	var coded interface{ ExitCode() int }
	switch {
	case err == nil:
		return 0
	case errors.As(err, &coded):
		return coded.ExitCode()
	case strings.HasPrefix(err.Error(), "unknown command "): // cobra's, from Find
		return exitUsage
	}
	return exitFailure
}

// markUsageErrors makes flag parsing and argument errors of cmd and its subcommands exit
// with exitUsage, and says a config key's flag errors in the config file's words.
func markUsageErrors(cmd *cobra.Command) {
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		var inv *pflag.InvalidValueError
		if errors.As(err, &inv) {
			if _, ok := inv.GetFlag().Value.(*configValue); ok {
				err = fmt.Errorf("--%s: %w", inv.GetFlag().Name, errors.Unwrap(inv))
			}
		}
		return usageError(fmt.Errorf("%w (see %s --help)", err, c.CommandPath()))
	})
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if args := c.Args; args != nil {
			c.Args = func(c *cobra.Command, a []string) error {
				if err := args(c, a); err != nil {
					return usageError(err)
				}
				return nil
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(cmd)
}
