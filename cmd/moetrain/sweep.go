package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/moetrain/moetrain/internal/units"
	"github.com/moetrain/moetrain/report"
	"github.com/moetrain/moetrain/sweep"
)

func init() {
	var (
		parallel int
		dryRun   bool
		sets     []string
		seeds    string
		out      string
	)
	cmd := &cobra.Command{
		Use:   "sweep SWEEP.yaml [--parallel N] [--dry-run] [--set key=value]... [--seeds 1,2,3] [--out DIR]",
		Short: "Train every run of a sweep (resumable), then write its summary, compare table and plots",
		Long: `Expand a sweep file (a base config, named variants, axes crossed into a grid,
seeds) into runs and train each one as a normal 'moetrain train' process in its
own run directory under the sweep's out directory, one at a time or --parallel
N at a time. Every run reads the same training tokens in the same order; seeds
change only model.init_seed.

Running the same command again resumes: finished runs (sweep-done.json) are
skipped and interrupted ones continue from their newest checkpoint. SIGINT or
SIGTERM asks every running trainer to save a checkpoint and stop.

At the end the sweep writes into its out directory: summary.md/.csv/.png/.svg
(each group's held-out loss, mean ± std over seeds, with total and activated
parameters and FLOPs, and the verdict on each expected ordering), and the
compare table and figures of 'moetrain compare' and 'moetrain plot'.`,
		Example: `  moetrain sweep configs/sweeps/table1.yaml
  moetrain sweep configs/sweeps/table1.yaml --seeds 1 --set train.tokens=524288 --out runs/table1-reduced`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := sweep.Load(args[0])
			if err != nil {
				return asUsage(err)
			}
			if err := spec.SetOverrides(sets); err != nil {
				return asUsage(err)
			}
			if seeds != "" {
				spec.Seeds = nil
				for _, f := range strings.Split(seeds, ",") {
					n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
					if err != nil {
						return usagef("--seeds %q: want a comma-separated list of integers", seeds)
					}
					spec.Seeds = append(spec.Seeds, n)
				}
			}
			if out != "" {
				spec.Out = out
			}
			runs, err := spec.Expand()
			if err != nil {
				return asUsage(fmt.Errorf("sweep %s: %w", args[0], err))
			}
			w := cmd.OutOrStdout()
			if dryRun {
				for _, r := range runs {
					st, err := sweep.StatusOf(r)
					if err != nil {
						return err
					}
					fmt.Fprintf(w, "# %s (%s)\nmoetrain %s\n", r.Name, st, shellJoin(sweep.Args(r)))
				}
				fmt.Fprintf(w, "# %d runs, %s training tokens each\n", len(runs), units.Commas(runs[0].Config.Train.Tokens))
				return nil
			}
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find the moetrain executable: %w", err)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rn := &sweep.Runner{Exe: exe, Parallel: parallel, Log: w}
			fmt.Fprintf(w, "sweep %s: %d runs into %s (logs: RUN/sweep.log, RUN/train.log)\n", args[0], len(runs), spec.Out)
			runErr := rn.Run(ctx, runs)
			if err := writeSweepReports(spec, runs, w); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "moetrain: sweep reports: %v\n", err)
				if runErr == nil {
					runErr = err
				}
			}
			return runErr
		},
	}
	f := cmd.Flags()
	f.IntVar(&parallel, "parallel", 1, "runs to train at once (each a separate process; on 2 cores 1 is fastest)")
	f.BoolVar(&dryRun, "dry-run", false, "print every run's status and command without training")
	f.StringArrayVar(&sets, "set", nil, "override a config key in every run, after the sweep's own overrides (key=value)")
	f.StringVar(&seeds, "seeds", "", "replace the sweep's seeds (comma-separated init seeds)")
	f.StringVar(&out, "out", "", "replace the sweep's out directory")
	rootCmd.AddCommand(cmd)
}

// writeSweepReports writes the seed summary of every run and the compare
// table and figures of the finished ones into the sweep's out directory.
func writeSweepReports(spec *sweep.Spec, runs []sweep.Run, w interface{ Write([]byte) (int, error) }) error {
	sum, err := sweep.Summarise(spec, runs)
	if err != nil {
		return err
	}
	if err := sum.Write(spec.Out); err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote %s\n", filepath.Join(spec.Out, "summary.md"))
	var done []string
	for _, r := range runs {
		if st, _ := sweep.StatusOf(r); st == sweep.Done {
			done = append(done, r.Dir)
		}
	}
	if len(done) == 0 {
		return nil
	}
	rs, err := report.LoadRuns(done)
	if err != nil {
		return err
	}
	t := report.Compare(rs)
	for _, o := range []struct {
		name  string
		write func(f *os.File) error
	}{
		{"compare.md", func(f *os.File) error { return t.Markdown(f) }},
		{"compare.csv", func(f *os.File) error { return t.CSV(f) }},
	} {
		fh, err := os.Create(filepath.Join(spec.Out, o.name))
		if err != nil {
			return err
		}
		if err := o.write(fh); err != nil {
			fh.Close()
			return fmt.Errorf("write %s: %w", o.name, err)
		}
		if err := fh.Close(); err != nil {
			return err
		}
	}
	if _, err := report.WriteFigures(rs, filepath.Join(spec.Out, "figures")); err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote %s, %s and %s\n", filepath.Join(spec.Out, "compare.md"), filepath.Join(spec.Out, "compare.csv"), filepath.Join(spec.Out, "figures"))
	return nil
}

// shellJoin quotes args for a copy-pasteable command line.
func shellJoin(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r == '/' || r == '.' || r == '-' || r == '_' || r == '=' || r == ':' || r == ',' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
		}) < 0 {
			b.WriteString(a)
			continue
		}
		b.WriteString("'" + strings.ReplaceAll(a, "'", `'\''`) + "'")
	}
	return b.String()
}
