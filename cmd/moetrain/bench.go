package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/moetrain/moetrain/bench"
	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/internal/blas"
	"github.com/moetrain/moetrain/internal/units"
)

func init() {
	var (
		asJSON     bool
		sets       []string
		opt        bench.Options
		cpuProfile string
	)
	cmd := &cobra.Command{
		Use:   "bench CONFIG",
		Short: "Time training steps (forward, backward, clipping, AdamW) on random tokens: tokens/s, MFU, peak RSS, per-op breakdown",
		Args:  argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if opt.Steps < 1 {
				return usagef("--steps %d: must be >= 1", opt.Steps)
			}
			if opt.Warmup < 0 || opt.Batch < 0 || opt.Seq < 0 {
				return usagef("--warmup, --batch and --seq must be >= 0")
			}
			cfg, err := configs.Load(args[0], sets)
			if err != nil {
				return asUsage(err)
			}
			if cpuProfile != "" {
				f, err := os.Create(cpuProfile)
				if err != nil {
					return fmt.Errorf("cpu profile: %w", err)
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return fmt.Errorf("cpu profile: %w", err)
				}
				defer pprof.StopCPUProfile()
			}
			if opt.Warmup == 0 {
				opt.Warmup = -1 // bench.Options: 0 means the default
			}
			info, err := initBLAS(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if cpuProfile != "" && info.Library != "" {
				// A product called on its own stack shows in a profile as
				// external code with no caller; through cgocall it has one.
				blas.SetDirectCalls(false)
				fmt.Fprintln(cmd.ErrOrStderr(), "cpu profile: the library's products go through cgocall, slower with two workers, so that the profile names their callers")
			}
			name := strings.TrimSuffix(filepath.Base(args[0]), filepath.Ext(args[0]))
			res, err := bench.Run(cfg, name, opt)
			if err != nil {
				return err
			}
			return printBench(cmd.OutOrStdout(), res, asJSON)
		},
	}
	f := cmd.Flags()
	f.IntVar(&opt.Steps, "steps", 10, "timed training steps")
	f.IntVar(&opt.Warmup, "warmup", 2, "untimed warm-up steps")
	f.IntVar(&opt.Batch, "batch", 0, "sequences per step (0: the config's micro-batch)")
	f.IntVar(&opt.Seq, "seq", 0, "tokens per sequence (0: the config's train.seq_len)")
	f.BoolVar(&opt.Breakdown, "breakdown", true, "time every op during one extra step")
	f.BoolVar(&asJSON, "json", false, "print one JSON object")
	f.BoolVar(&opt.Forward, "forward", true, "also time forward-only passes (the evaluation graph) after the training steps, alternating with as many more steps")
	f.BoolVar(&opt.MeasurePeak, "measure-peak", false, "measure the sgemm peak again instead of using the cached one or MOETRAIN_PEAK_GFLOPS (the cache keeps the higher)")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a pprof CPU profile of the whole run to this file (the library's products then go through cgocall, so that it names their callers)")
	f.StringArrayVar(&sets, "set", nil, "override a config key (key=value, value parsed as YAML)")
	rootCmd.AddCommand(cmd)
}

func printBench(w io.Writer, r bench.Result, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(r)
	}
	fmt.Fprintf(w, "%s (%s): batch %d × seq %d, %d timed steps, %d workers, %s products, BLAS %s\n", r.Config, r.FFN, r.Batch, r.Seq, r.Steps, r.Threads, r.Products, r.Kernel)
	fmt.Fprintf(w, "tokens/s        %.0f (median step %.1f ms, %.1f ms CPU time per step)\n", r.TokensPerS, r.StepS*1e3, r.CPUPerStep*1e3)
	fmt.Fprintf(w, "  graph %.1f ms, gradient copy %.1f ms, clip %.1f ms, AdamW %.1f ms\n", r.Phases.GraphS*1e3, r.Phases.CopyS*1e3, r.Phases.ClipS*1e3, r.Phases.AdamS*1e3)
	fmt.Fprintf(w, "achieved        %.1f GFLOP/s (%.4g FLOPs/token, DESIGN.md §7.3)\n", r.GFLOPS, r.FLOPsPerToken)
	switch {
	case r.SgemmGFLOPS > 0:
		fmt.Fprintf(w, "peak            %.1f GFLOP/s (%s; %s)\n", r.SgemmGFLOPS, r.PeakSource, r.PeakKey)
		fmt.Fprintf(w, "MFU             %.1f%% of that peak\n", 100*r.MFU)
		if r.Products == configs.ProductsBF16 {
			fmt.Fprintln(w, "                (a float32 peak: bf16 products can run past it)")
		}
	case r.PeakSource != "":
		fmt.Fprintf(w, "MFU             none: %s\n", r.PeakSource)
	}
	if r.ForwardTokensPerS > 0 {
		fmt.Fprintf(w, "forward only    %.0f tokens/s, %.2f× training (evaluation graph, no gradients, alternated with training steps; %.2f× in CPU time)\n", r.ForwardTokensPerS, r.ForwardRatio, r.ForwardCPURatio)
	}
	ratio := 0.0
	if r.Estimated > 0 {
		ratio = float64(r.PeakRSS) / float64(r.Estimated)
	}
	fmt.Fprintf(w, "peak RSS        %s (estimate %s, ratio %.2f)\n", units.Bytes(r.PeakRSS), units.Bytes(r.Estimated), ratio)
	fmt.Fprintf(w, "allocation      %s and %.0f objects per step, %.2f GCs per step\n", units.Bytes(int64(r.AllocBytes)), r.Allocs, r.GCPerStep)
	if len(r.Ops) > 0 {
		fmt.Fprintf(w, "\nper-op time in one profiled step (%s; cores = an op's CPU time over its wall time):\n", profiledLine(r.OpsStep))
		printOps(w, r.Ops)
	}
	if len(r.ForwardOps) > 0 {
		fmt.Fprintf(w, "\nper-op time in one profiled forward-only pass (%s):\n", profiledLine(r.ForwardOpsPass))
		printOps(w, r.ForwardOps)
	}
	return nil
}

// profiledLine says how long a profiled step or pass took and how busy the
// cores were.
func profiledLine(p bench.Profiled) string {
	line := fmt.Sprintf("%.1f ms, %.2f cores busy", p.WallS*1e3, p.CPUS/p.WallS)
	if p.HelperBusy > 0 {
		line += fmt.Sprintf(", helper cores running loop chunks %.0f%% of it", 100*p.HelperBusy)
	}
	return line
}

// printOps writes a breakdown table: calls, wall time, share of the whole
// and cores busy per op.
func printOps(w io.Writer, rows []bench.OpTime) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\tcalls\tms\tshare\tcores\t")
	for _, o := range rows {
		cores := "-"
		if o.CPUSeconds > 0 && o.Seconds > 0 {
			cores = fmt.Sprintf("%.2f", o.CPUSeconds/o.Seconds)
		}
		name := o.Op
		if o.Part != "" {
			name = o.Op + " · " + o.Part // a stretch of the op above, already in its time
		}
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f%%\t%s\t\n", name, o.Calls, o.Seconds*1e3, 100*o.Share, cores)
	}
	tw.Flush()
}
