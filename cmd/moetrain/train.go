package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/dist"
	"github.com/moetrain/moetrain/internal/parallel"
	"github.com/moetrain/moetrain/internal/units"
	"github.com/moetrain/moetrain/train"
)

func init() {
	var runDir string
	var sets []string
	var plain, restart bool
	cmd := &cobra.Command{
		Use:   "train CONFIG --run-dir DIR [--set key=value]...",
		Short: "Train to the config's token budget; run it again on the same run directory to resume",
		Long: `Train a model from a YAML config to train.tokens training tokens.

Running the same command again on the same --run-dir continues the run exactly
where its newest valid checkpoint left it, as if it had never stopped. SIGINT or
SIGTERM saves a checkpoint at the next step boundary and exits 0; a second signal
exits at once (checkpoints are written atomically, so nothing is corrupted).`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if runDir == "" {
				return usagef("--run-dir is required")
			}
			cfg, err := configs.Load(args[0], sets)
			if err != nil {
				return asUsage(err)
			}
			shareHostCores(cmd.ErrOrStderr())
			if _, err := initBLAS(cmd.ErrOrStderr()); err != nil {
				return err
			}
			var stop atomic.Bool
			sig := make(chan os.Signal, 2)
			signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
			defer signal.Stop(sig)
			go func() {
				s := <-sig
				fmt.Fprintf(os.Stderr, "\nmoetrain: %v: saving a checkpoint at the next step boundary (send it again to exit now)\n", s)
				stop.Store(true)
				<-sig
				fmt.Fprintln(os.Stderr, "moetrain: second signal: exiting now; the newest complete checkpoint is intact")
				os.Exit(130)
			}()
			resume := "moetrain train " + args[0] + " --run-dir " + runDir
			for _, s := range sets {
				resume += " --set " + s
			}
			sum, err := train.Run(context.Background(), train.Options{
				Config: cfg, RunDir: runDir, Out: cmd.OutOrStdout(), Live: !plain && isTerminal(os.Stdout),
				Stop: stop.Load, ResumeCommand: resume, Restart: restart,
			})
			if err != nil {
				if errors.Is(err, train.ErrConfigChanged) {
					return asUsage(err)
				}
				var ce *configs.Error
				if errors.As(err, &ce) {
					return asUsage(err)
				}
				return err
			}
			// Under mpirun only rank 0 reports.
			if c, err := dist.World(); err == nil && c.Rank() == 0 {
				printSummary(cmd, sum)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&runDir, "run-dir", "", "run directory (created if missing; resumed if it holds checkpoints)")
	cmd.Flags().StringArrayVar(&sets, "set", nil, "override a config key (key=value, value parsed as YAML)")
	cmd.Flags().BoolVar(&plain, "plain", false, "plain log lines instead of a progress bar")
	cmd.Flags().BoolVar(&restart, "restart", false, "when every checkpoint of the run directory is damaged, train again from zero tokens instead of stopping")
	rootCmd.AddCommand(cmd)
}

func printSummary(cmd *cobra.Command, s train.Summary) {
	w := cmd.OutOrStdout()
	var b strings.Builder
	if s.Complete {
		fmt.Fprintf(w, "\nalready complete: %s tokens in %d steps; checkpoint %s\n", units.Commas(s.Tokens), s.Steps, s.Checkpoint)
		return
	}
	if s.Interrupted {
		fmt.Fprintf(&b, "\ninterrupted at %s tokens (step %d); checkpoint %s\n", units.Commas(s.Tokens), s.Steps, s.Checkpoint)
		fmt.Fprint(w, b.String())
		return
	}
	fmt.Fprintf(&b, "\ndone: %s tokens in %d steps\n", units.Commas(s.Tokens), s.Steps)
	fmt.Fprintf(&b, "  final train loss      %.4f\n", s.TrainLoss)
	if s.ValLoss > 0 {
		fmt.Fprintf(&b, "  validation loss       %.4f (%.4f bits/byte)\n", s.ValLoss, s.ValBPB)
	}
	fmt.Fprintf(&b, "  parameters            %s total, %s activated\n", units.Commas(s.Total), units.Commas(s.Activated))
	if s.TokensPerS > 0 {
		fmt.Fprintf(&b, "  speed                 %.0f tokens/s, MFU %.1f%%\n", s.TokensPerS, 100*s.MFU)
	}
	fmt.Fprintf(&b, "  checkpoint            %s\n", s.Checkpoint)
	fmt.Fprint(w, b.String())
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// shareHostCores gives this rank its share of the host's cores when mpirun
// put several ranks on it and GOMAXPROCS does not say (dist.HostCores).
// It must run before BLAS and the workers start.
func shareHostCores(stderr io.Writer) {
	n, ranks := dist.HostCores(runtime.NumCPU())
	if n == 0 {
		return
	}
	runtime.GOMAXPROCS(n)
	parallel.Workers = n
	if os.Getenv("OMPI_COMM_WORLD_RANK") != "0" {
		return
	}
	fmt.Fprintf(stderr, "note: %d ranks share this host's %d cores: each uses %d (set GOMAXPROCS to choose)\n", ranks, runtime.NumCPU(), n)
}
