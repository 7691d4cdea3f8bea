package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/moetrain/moetrain/data"
)

func init() {
	dataCmd := &cobra.Command{
		Use:   "data",
		Short: "Look into prepared datasets",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	var sample int
	inspect := &cobra.Command{
		Use:   "inspect DIR",
		Short: "Verify a dataset and show its manifest, tokens per domain, a decoded sample and vocabulary coverage",
		Args:  argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if sample < 0 {
				return usagef("--sample %d is negative", sample)
			}
			rep, err := data.Inspect(args[0], sample)
			if errors.Is(err, data.ErrNotDataset) {
				return asUsage(err)
			}
			if err != nil {
				return err
			}
			return rep.Format(cmd.OutOrStdout())
		},
	}
	inspect.Flags().IntVar(&sample, "sample", 120, "tokens of the train stream to decode")
	dataCmd.AddCommand(inspect)
	rootCmd.AddCommand(dataCmd)
}
