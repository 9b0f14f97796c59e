// Command metlo-appliance captures mirrored cloud traffic and reports every HTTP API call in
// it as a Metlo trace; it also provisions the cloud mirroring that feeds it.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/metlo-labs/metlo-appliance/cmd/metlo-appliance/internal/initgc"
)

// version is set at build time with -ldflags "-X main.version=…"; without it the module
// version or VCS revision of the build stands in (version.go).
var version = "dev"

func main() {
	// The collector was held off while packages initialised; a command turns it back on
	// before it runs (--version and --help exit before that, without ever collecting).
	cobra.OnInitialize(initgc.Restore)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "metlo-appliance:", err)
		os.Exit(exitCode(err)) // exit.go lists the codes
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "metlo-appliance",
		Short:         "Turn mirrored cloud traffic into Metlo API traces",
		Version:       versionLine(buildVersion()),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newCollectCmd())
	root.AddCommand(newProvisionCmds()...)
	root.AddCommand(newConfigCmd())
	root.AddCommand(newBootCmd())
	markUsageErrors(root)
	return root
}
