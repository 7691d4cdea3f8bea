package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/moetrain/moetrain/tasks"
)

func init() {
	var maxExamples int
	group := &cobra.Command{
		Use:   "tasks",
		Short: "Manage evaluation tasks",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	build := &cobra.Command{
		Use:   "build DATASET_DIR",
		Short: "(Re)build a dataset's built-in tasks (next_verse, last_word, code_next_line) from its validation split",
		Long: `Build writes DATASET_DIR/tasks/<name>.jsonl for every built-in task, made
deterministically from the dataset's validation split (the same dataset always
gives the same files). 'moetrain prepare' does this already; run it again after
changing the task builder, or on a dataset prepared before tasks existed.

All three are multiple choice with four choices, scored by log-likelihood:
  next_verse      one or two verses and the next verse's number; the true
                  verse against three verses of similar length from other
                  chapters (HellaSwag-like)
  last_word       a verse without its last word; the word against the last
                  words of three other verses (LAMBADA-like; multiple choice
                  rather than exact-match generation, which stays near zero
                  for small models)
  code_next_line  up to twelve lines of a Go file; the true next line against
                  three lines of similar length from elsewhere, re-indented
                  like it`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if maxExamples < 0 {
				return usagef("--max-examples must be >= 0, got %d", maxExamples)
			}
			if st, err := os.Stat(args[0]); err != nil || !st.IsDir() {
				return usagef("%s is not a dataset directory (make one with 'moetrain prepare')", args[0])
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			return buildTasks(ctx, cmd.OutOrStdout(), args[0], args[0], maxExamples)
		},
	}
	build.Flags().IntVar(&maxExamples, "max-examples", tasks.DefaultBuiltinExamples, "examples per task at most")
	group.AddCommand(build)
	rootCmd.AddCommand(group)
}

// buildTasks builds the built-in tasks of the dataset in dir and reports
// them as if dir were shownAs (prepare builds them in the dataset's
// temporary directory, before publishing it).
func buildTasks(ctx context.Context, w io.Writer, dir, shownAs string, maxExamples int) error {
	res, err := tasks.BuildBuiltin(ctx, dir, tasks.BuiltinOptions{MaxExamples: maxExamples})
	if err != nil {
		return err
	}
	for _, t := range res {
		if t.Examples == 0 {
			fmt.Fprintf(w, "task %s: no material in the validation split; no file written\n", t.Name)
			continue
		}
		path := t.Path
		if rel, err := filepath.Rel(dir, t.Path); err == nil {
			path = filepath.Join(shownAs, rel)
		}
		fmt.Fprintf(w, "task %s: %d %s examples in %s\n", t.Name, t.Examples, t.Kind, path)
	}
	return nil
}
