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
	"time"

	"github.com/spf13/cobra"

	"github.com/moetrain/moetrain/bench"
	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/internal/units"
	"github.com/moetrain/moetrain/report"
	"github.com/moetrain/moetrain/sweep"
)

func init() {
	var (
		parallel  int
		dryRun    bool
		noMeasure bool
		sets      []string
		seeds     string
		out       string
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
				// Time a few training steps of every distinct model (the
				// rate a partial run logged, when it has one).
				measure := func(c configs.Config) (float64, error) {
					fmt.Fprintf(cmd.ErrOrStderr(), "timing 3 training steps of %s (d=%d, %d layers) for the estimate...\n", report.Variant(c.Model), c.Model.Hidden, c.Model.Layers)
					res, err := bench.Run(c, "", bench.Options{Steps: 3, Warmup: 1, NoPeak: true})
					return res.TokensPerS, err
				}
				if noMeasure {
					measure = func(configs.Config) (float64, error) { return 0, nil }
				}
				ests, err := sweep.Estimates(runs, measure)
				if err != nil {
					return err
				}
				var total float64
				for i, r := range runs {
					st, err := sweep.StatusOf(r)
					if err != nil {
						return err
					}
					e := ests[i]
					fmt.Fprintf(w, "# %s (%s): %s\nmoetrain %s\n", r.Name, st, estimateLine(e), shellJoin(sweep.Args(r)))
					total += e.Seconds
				}
				fmt.Fprintf(w, "# %d runs, %s training tokens each", len(runs), units.Commas(runs[0].Config.Train.Tokens))
				if !noMeasure {
					fmt.Fprintf(w, "; estimated %s one run at a time (rates measured now, on this machine, at its current load; task evaluations not counted)", duration(total))
				}
				fmt.Fprintln(w)
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
	f.BoolVar(&dryRun, "dry-run", false, "print every run's status, command and estimated time without training")
	f.BoolVar(&noMeasure, "no-measure", false, "with --dry-run: skip timing steps (no time estimates)")
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
		{"compare.md", func(f *os.File) error {
			if err := t.Markdown(f); err != nil {
				return err
			}
			_, err := fmt.Fprintf(f, "\n%s\n", t.HeldOutNote())
			return err
		}},
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

// estimateLine says how long a run should take and why.
func estimateLine(e sweep.Estimate) string {
	if e.TokensLeft == 0 {
		return "nothing left to train"
	}
	if e.TokensPerS == 0 {
		return units.Commas(e.TokensLeft) + " tokens left, " + report.Sci(e.FLOPs) + " FLOPs"
	}
	return fmt.Sprintf("about %s: %s tokens left, %s FLOPs at %.0f tokens/s (%.2f GFLOP/s, from %s)",
		duration(e.Seconds), units.Commas(e.TokensLeft), report.Sci(e.FLOPs), e.TokensPerS, e.FLOPs/(float64(e.TokensLeft))*e.TokensPerS/1e9, e.Measured)
}

// duration rounds seconds for people: 3h25m, 12m30s, 45s.
func duration(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d >= time.Hour:
		d = d.Round(time.Minute)
	case d >= time.Minute:
		d = d.Round(time.Second)
	default:
		d = d.Round(time.Second)
	}
	out := d.String()
	if strings.HasSuffix(out, "m0s") {
		out = strings.TrimSuffix(out, "0s")
	}
	return out
}
