package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newCollectCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "collect",
		Short: "Capture mirrored traffic and export every HTTP exchange as a Metlo trace",
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New("not implemented yet")
		},
	}
}
