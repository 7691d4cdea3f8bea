package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/moetrain/moetrain/report"
)

func init() {
	var out string
	var tasks []string
	cmd := &cobra.Command{
		Use:   "plot RUN_DIR... --out DIR",
		Short: "Draw loss and task-score figures of runs as PNG and SVG",
		Long: `Plot writes these figures, each as DIR/NAME.png and DIR/NAME.svg:

  loss_vs_tokens     training loss (smoothed; the raw curve pale) and held-out
                     loss (points) against training tokens
  loss_vs_flops      the same against training compute (floating-point
                     operations: tokens × FLOPs per token)
  tasks_vs_tokens    a panel per task: its score against training tokens, with
                     the chance score (a uniform guess) dotted
  score_vs_params    average task score and held-out loss against activated
                     parameters, a point per group of seeds (the mean, a ±1 std
                     bar; circles dense, triangles MoE) and the least-squares
                     trend through the dense groups
  expert_load_RUN    per MoE run: each layer's per-expert load over training
                     (expert × tokens; blue under an even share, red over it)

Runs whose configs differ only in model.init_seed are one group: drawn as the
mean over their seeds with a min–max band. Dense runs are dashed, MoE runs
solid; a run keeps its color in every figure; legends sit below the panels.`,
		Example: `  moetrain plot runs/small-* --out figures
  moetrain plot runs/regime-table1/*_seed-* --tasks last_word --out figures`,
		Args: argsUsage(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usagef("--out DIR is required")
			}
			runs, err := loadRuns(args, tasks)
			if err != nil {
				return err
			}
			paths, err := report.WriteFigures(runs, out)
			if err != nil {
				return err
			}
			for _, p := range paths {
				fmt.Fprintln(cmd.OutOrStdout(), "wrote", p)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory to write the figures into (required; created if missing)")
	tasksFlag(cmd, &tasks)
	rootCmd.AddCommand(cmd)
}
