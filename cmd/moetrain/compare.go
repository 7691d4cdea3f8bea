package main

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/moetrain/moetrain/internal/atomicfile"
	"github.com/moetrain/moetrain/report"
)

func init() {
	var csvPath, mdPath string
	var tasks []string
	cmd := &cobra.Command{
		Use:   "compare RUN_DIR... [--csv FILE] [--md FILE]",
		Short: "Tabulate runs side by side: variant, parameters, FLOPs, tokens, held-out loss, task scores",
		Long: `Compare prints a markdown table with one column per run, laid out like the
paper's Table 1: the variant (FFN kind and experts: shared+active/routed), total
and activated parameters, FLOPs per 2K tokens, training tokens, the last
held-out loss, each task's last score (accuracy for multiple choice, exact
match for generation, in percent) and their average over the tasks every run
has. --md writes the markdown to a file instead of stdout; --csv also writes
the table with exact values (scores as fractions).`,
		Example: `  moetrain compare runs/small-dense runs/small-deepseekmoe --csv compare.csv`,
		Args:    argsUsage(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			runs, err := loadRuns(args, tasks)
			if err != nil {
				return err
			}
			tbl := report.Compare(runs)
			if csvPath != "" {
				var b bytes.Buffer
				if err := tbl.CSV(&b); err != nil {
					return err
				}
				if err := atomicfile.WriteFile(csvPath, b.Bytes(), 0o644); err != nil {
					return fmt.Errorf("write CSV: %w", err)
				}
			}
			var b bytes.Buffer
			if err := tbl.Markdown(&b); err != nil {
				return err
			}
			b.WriteString("\n" + tbl.HeldOutNote() + "\n")
			if mdPath == "" {
				_, err := cmd.OutOrStdout().Write(b.Bytes())
				return err
			}
			if err := atomicfile.WriteFile(mdPath, b.Bytes(), 0o644); err != nil {
				return fmt.Errorf("write markdown: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&csvPath, "csv", "", "also write the table as CSV to this file")
	cmd.Flags().StringVar(&mdPath, "md", "", "write the markdown table to this file instead of stdout")
	tasksFlag(cmd, &tasks)
	rootCmd.AddCommand(cmd)
}

// loadRuns loads run directories; a path that is not a run, or a run with
// nothing to compare, is a usage mistake (exit 2), and unreadable files are
// run-time failures (exit 1).
// loadRuns reads the run directories and, when tasks is not empty, keeps
// only those benchmark tasks (report.KeepTasks).
func loadRuns(dirs, tasks []string) ([]*report.Run, error) {
	runs, err := report.LoadRuns(dirs)
	if err == nil && len(tasks) > 0 {
		err = report.KeepTasks(runs, tasks)
	}
	if err != nil && (errors.Is(err, report.ErrNotRun) || errors.Is(err, report.ErrNoEval) || errors.Is(err, report.ErrUnknownTask)) {
		return nil, asUsage(err)
	}
	return runs, err
}

// tasksFlag is the --tasks flag of the commands that tabulate or plot runs.
func tasksFlag(cmd *cobra.Command, tasks *[]string) {
	cmd.Flags().StringSliceVar(tasks, "tasks", nil, "only these benchmark tasks (comma-separated) in the scores and their average, e.g. the tasks above chance at this scale")
}
