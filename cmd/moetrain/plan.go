package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/internal/units"
	"github.com/moetrain/moetrain/model"
	"github.com/moetrain/moetrain/planner"
)

func init() {
	var (
		sets      []string
		c         planner.Cluster
		mem       string
		overhead  string
		precision string
		recompute string
		o         planner.Options
		asJSON    bool
	)
	cmd := &cobra.Command{
		Use:   "plan CONFIG --gpus N --gpu-mem 80GiB --tflops X",
		Short: "Estimate memory per rank, step time and tokens/s of data- and expert-parallel layouts",
		Long: `Estimate, without allocating anything, what training CONFIG on N devices
costs for every data-parallel × expert-parallel layout (DP·EP = N, EP dividing
the routed experts): memory per rank (weights, gradients, optimizer state,
activations of one micro-batch) and the time of one optimizer step split into
compute, gradient reduction and expert all-to-all, with tokens/s.

The defaults describe moetrain's own CPU training (fp32, no optimizer
sharding, no recomputation, attention scores materialised). For a GPU cluster
state its choices, e.g.

  --precision bf16 --zero 1 --recompute selective --flash-attention --micro-batch 1

It prints its assumptions, then the layouts that fit ranked by tokens/s, then
those that do not. The formulas are written out in docs/DISTRIBUTED.md.`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := configs.Load(args[0], sets)
			if err != nil {
				return asUsage(err)
			}
			if c.MemBytes, err = units.ParseBytes(mem); err != nil {
				return usagef("--gpu-mem: %v", err)
			}
			if overhead != "0" {
				if c.OverheadBytes, err = units.ParseBytes(overhead); err != nil {
					return usagef("--overhead: %v", err)
				}
			}
			o.Precision, o.Recompute = planner.Precision(precision), planner.Recompute(recompute)
			if !cmd.Flags().Changed("micro-batch") {
				o.MicroBatch = cfg.Train.MicroBatchSize
			}
			if err := c.Validate(); err != nil {
				return usagef("%v (--gpus, --gpu-mem, --tflops, --bandwidth, --overlap)", err)
			}
			if err := o.Validate(); err != nil {
				return usagef("--%v", err)
			}
			rows, err := planner.Plan(cfg, c, o)
			if err != nil {
				return asUsage(err)
			}
			return printPlan(cmd.OutOrStdout(), cfg, c, o, planner.Rank(rows), asJSON)
		},
	}
	f := cmd.Flags()
	f.IntVar(&c.Devices, "gpus", 1, "number of devices (MPI ranks)")
	f.StringVar(&mem, "gpu-mem", "80GiB", "memory per device (e.g. 80GiB, 40GB, 512MiB)")
	f.Float64Var(&c.TFLOPS, "tflops", 0, "sustained TFLOP/s per device for the model's matrix products (required)")
	f.Float64Var(&c.BandwidthGBs, "bandwidth", 25, "network bandwidth per device in GB/s (gradient reduction and all-to-all)")
	f.Float64Var(&c.Overlap, "overlap", 0, "fraction of the gradient reduction hidden behind the backward pass, 0 to 1")
	f.StringVar(&overhead, "overhead", "0", "memory per device outside the model (runtime and libraries, CUDA context), e.g. 90MiB or 2GiB")
	f.StringVar(&precision, "precision", "fp32", "fp32 (moetrain) or bf16 (bf16 weights, gradients and activations; fp32 master weights and AdamW moments)")
	f.IntVar(&o.ZeRO, "zero", 0, "optimizer-state sharding over data-parallel ranks: 0 none, 1 optimizer states, 2 also gradients")
	f.StringVar(&recompute, "recompute", "none", "activation recomputation: none, selective (attention scores) or full (each layer from its input)")
	f.BoolVar(&o.FlashAttention, "flash-attention", false, "attention without materialised T×T scores")
	f.IntVar(&o.MicroBatch, "micro-batch", 0, "sequences per micro-batch on a rank (default: train.micro_batch_size, or when unset the largest that fits)")
	f.IntVar(&o.EP, "ep", 0, "only this expert-parallel degree (data-parallel degree = gpus/ep); 0 tries every one")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	f.StringArrayVar(&sets, "set", nil, "override a config key (key=value, value parsed as YAML)")
	rootCmd.AddCommand(cmd)
}

// planReport is the JSON form of `moetrain plan`.
type planReport struct {
	Assumptions []string         `json:"assumptions"`
	Layouts     []planner.Layout `json:"layouts"`
}

func printPlan(w io.Writer, cfg configs.Config, c planner.Cluster, o planner.Options, rows []planner.Layout, asJSON bool) error {
	if asJSON {
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		return e.Encode(planReport{Assumptions: planner.Assumptions(c, o), Layouts: rows})
	}
	n := model.Count(cfg.Model)
	_, routed := planner.Split(cfg.Model)
	fmt.Fprintf(w, "%s total parameters (%s in routed experts), %s activated; batch %d × %d tokens; %.3g FLOPs/token\n",
		units.Commas(n.Total), units.Commas(routed), units.Commas(n.Activated), cfg.Train.BatchSize, cfg.Train.SeqLen,
		model.FLOPsPerToken(cfg.Model, cfg.Train.SeqLen))
	fmt.Fprintf(w, "%d devices of %s. Assumptions:\n", c.Devices, gib(c.MemBytes))
	for _, a := range planner.Assumptions(c, o) {
		fmt.Fprintf(w, "  - %s\n", a)
	}
	fits := 0
	for _, r := range rows {
		if r.Fits {
			fits++
		}
	}
	switch fits {
	case 0:
		fmt.Fprintf(w, "\nNo layout fits %s per device; the closest first:\n\n", gib(c.MemBytes))
	default:
		fmt.Fprintf(w, "\n%d of %d layouts fit, fastest first:\n\n", fits, len(rows))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "DP\tEP\tmicro\tweights\tgrads\toptimizer\tactivations\ttotal/rank\tfits\tcompute s\tall-reduce s\tall-to-all s\tstep s\ttokens/s\t")
	for _, r := range rows {
		fit := "yes"
		if !r.Fits {
			fit = "NO"
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%.3f\t%.3f\t%.3f\t%.3f\t%.0f\t\n", r.DP, r.EP, r.MicroBatch,
			gib(r.Weights), gib(r.Gradients), gib(r.Optimizer), gib(r.Activations), gib(r.Total), fit,
			r.ComputeS, r.AllReduceS, r.AllToAllS, r.StepS, r.TokensPerS)
	}
	return tw.Flush()
}

func gib(n int64) string { return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30)) }
