package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/reference"
)

func init() {
	var (
		sets       []string
		out        string
		steps      int
		configOnly bool
	)
	cmd := &cobra.Command{
		Use:   "reference-inputs CONFIG --out DIR [--steps N] [--set key=value]",
		Short: "Write what the PyTorch reference needs to replay a run: config JSON, initial weights, train batches, held-out windows",
		Long: `Write into DIR what reference/torchref.py needs to train and evaluate as a
run of CONFIG would (reference/README.md):

  config.json       the resolved config, as JSON
  init.safetensors  the initial weights moetrain draws from model.init_seed
  batches.i32       the train windows of the first --steps steps (default:
                    all of train.tokens), in the order the trainer reads them
  heldout.i32       the validation windows held-out evaluation scores
                    (eval.tokens of them; the whole split when 0)

Windows are little-endian int32, train.seq_len+1 token ids each. It prints a
JSON summary of what it wrote.

Run the reference on them as reference/README.md shows.`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usagef("--out is required")
			}
			if steps < 0 {
				return usagef("--steps %d is negative", steps)
			}
			cfg, err := configs.Load(args[0], sets)
			if err != nil {
				return asUsage(err)
			}
			if err := cfg.Validate(); err != nil {
				return asUsage(err)
			}
			if configOnly {
				return reference.WriteConfig(cfg, out)
			}
			in, err := reference.WriteInputs(cfg, out, steps)
			if err != nil {
				return err
			}
			raw, _ := json.Marshal(in)
			fmt.Fprintln(cmd.OutOrStdout(), string(raw))
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory to write into (created)")
	cmd.Flags().IntVar(&steps, "steps", 0, "optimizer steps of batches to write (0: all of train.tokens)")
	cmd.Flags().BoolVar(&configOnly, "config-only", false, "write only config.json (for torchref.py bench, which needs no data)")
	cmd.Flags().StringArrayVar(&sets, "set", nil, "override a config key (key=value, value parsed as YAML)")
	rootCmd.AddCommand(cmd)
}
