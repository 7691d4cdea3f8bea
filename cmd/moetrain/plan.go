package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/internal/units"
	"github.com/moetrain/moetrain/model"
)

func init() {
	var (
		sets      []string
		gpus      int
		mem       string
		tflops    float64
		bandwidth float64
		asJSON    bool
		micro     int
	)
	cmd := &cobra.Command{
		Use:   "plan CONFIG --gpus N --gpu-mem 80GiB --tflops X",
		Short: "Estimate memory per rank, step time and tokens/s of data- and expert-parallel layouts",
		Long: `Estimate, without allocating anything, what training CONFIG on N devices
costs for every data-parallel × expert-parallel layout (DP·EP = N, EP dividing
the routed experts): memory per rank (weights, gradients, AdamW moments,
activations of one micro-batch: train.micro_batch_size, or when unset the
largest that fits), and the time of one optimizer step split
into compute, gradient all-reduce and expert all-to-all, with tokens/s.
The formulas are written out in docs/DISTRIBUTED.md.`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := configs.Load(args[0], sets)
			if err != nil {
				return asUsage(err)
			}
			bytes, err := parseBytes(mem)
			if err != nil {
				return usagef("--gpu-mem: %v", err)
			}
			if gpus < 1 {
				return usagef("--gpus must be at least 1, got %d", gpus)
			}
			if !(tflops > 0) || math.IsInf(tflops, 0) {
				return usagef("--tflops must be a positive number (sustained TFLOP/s per device), got %v", tflops)
			}
			if !(bandwidth > 0) || math.IsInf(bandwidth, 0) {
				return usagef("--bandwidth must be a positive number of GB/s per device, got %v", bandwidth)
			}
			if micro < 0 {
				return usagef("--micro-batch must be >= 0, got %d", micro)
			}
			if !cmd.Flags().Changed("micro-batch") {
				micro = cfg.Train.MicroBatchSize
			}
			rows, err := planLayouts(cfg, PlanInput{GPUs: gpus, MemBytes: bytes, TFLOPS: tflops, BandwidthGBs: bandwidth, MicroBatch: micro})
			if err != nil {
				return asUsage(err)
			}
			return printPlan(cmd.OutOrStdout(), cfg, rows, asJSON)
		},
	}
	cmd.Flags().IntVar(&gpus, "gpus", 1, "number of devices (MPI ranks)")
	cmd.Flags().StringVar(&mem, "gpu-mem", "80GiB", "memory per device (e.g. 80GiB, 40GB, 512MiB)")
	cmd.Flags().Float64Var(&tflops, "tflops", 0, "sustained TFLOP/s per device for the model's matrix products (required)")
	cmd.Flags().Float64Var(&bandwidth, "bandwidth", 25, "network bandwidth per device in GB/s (all-reduce and all-to-all)")
	cmd.Flags().IntVar(&micro, "micro-batch", 0, "sequences per micro-batch on a rank (default: train.micro_batch_size, or when unset the largest that fits)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringArrayVar(&sets, "set", nil, "override a config key (key=value, value parsed as YAML)")
	rootCmd.AddCommand(cmd)
}

// PlanInput is the hardware a plan is made for.
type PlanInput struct {
	GPUs         int
	MemBytes     int64
	TFLOPS       float64
	BandwidthGBs float64
	// MicroBatch fixes the micro-batch (sequences per rank per pass);
	// 0 picks the largest that fits.
	MicroBatch int
}

// PlanRow is one layout's estimate.
type PlanRow struct {
	DP, EP          int
	MicroBatch      int   // sequences per micro-batch on a rank
	Weights         int64 `json:"weights_bytes"`
	Gradients       int64 `json:"gradients_bytes"`
	Optimizer       int64 `json:"optimizer_bytes"`
	Activations     int64 `json:"activations_bytes"`
	Total           int64 `json:"total_bytes"`
	Fits            bool  `json:"fits"`
	ComputeS        float64
	AllReduceS      float64
	AllToAllS       float64
	StepS           float64
	TokensPerS      float64
	MemoryHeadroomP float64 `json:"memory_use_fraction"`
}

// routedParams counts the routed experts' parameters (all MoE layers).
func routedParams(m configs.Model) int64 {
	var n int64
	for _, p := range model.Layout(m) {
		if !p.Int && strings.Contains(p.Name, ".mlp.experts.") {
			n += int64(p.Size())
		}
	}
	return n
}

// moeLayers counts the MoE layers.
func moeLayers(m configs.Model) int {
	n := 0
	for l := 0; l < m.Layers; l++ {
		if m.IsMoELayer(l) {
			n++
		}
	}
	return n
}

// planLayouts evaluates every layout DP·EP = GPUs whose EP divides the
// routed experts (EP = 1 only for dense models) and whose DP divides the
// batch. The formulas are in docs/DISTRIBUTED.md, "Planning".
func planLayouts(cfg configs.Config, in PlanInput) ([]PlanRow, error) {
	m, t := cfg.Model, cfg.Train
	if t.BatchSize%in.GPUs != 0 {
		return nil, fmt.Errorf("train.batch_size %d is not divisible by %d devices: every rank trains on an equal share of each batch", t.BatchSize, in.GPUs)
	}
	const f32 = 4
	c := model.Count(m)
	pr := routedParams(m)
	po := c.Total - pr
	local := t.BatchSize / in.GPUs
	fpt := model.FLOPsPerToken(m, t.SeqLen)
	tokensRank := float64(local) * float64(t.SeqLen)
	bw := in.BandwidthGBs * 1e9
	ring := func(bytes float64, p int) float64 { // ring all-reduce time
		if p <= 1 {
			return 0
		}
		return 2 * float64(p-1) / float64(p) * bytes / bw
	}
	var rows []PlanRow
	for ep := 1; ep <= in.GPUs; ep++ {
		if in.GPUs%ep != 0 || (ep > 1 && (m.RoutedExperts == 0 || m.RoutedExperts%ep != 0)) {
			continue
		}
		dp := in.GPUs / ep
		params := po + pr/int64(ep)
		r := PlanRow{DP: dp, EP: ep, Weights: params * f32, Gradients: 2 * params * f32, Optimizer: 2 * params * f32}
		// The micro-batch: as the config says (what train would use), or
		// with --micro-batch 0 the largest divisor of the rank's share
		// that fits (1 when none does).
		for b := local; b >= 1; b-- {
			if local%b != 0 || (in.MicroBatch > 0 && b != gcdInt(in.MicroBatch, local)) {
				continue
			}
			r.MicroBatch, r.Activations = b, model.EstimateMemory(m, b, t.SeqLen).Activations
			r.Total = r.Weights + r.Gradients + r.Optimizer + r.Activations
			if r.Total <= in.MemBytes || in.MicroBatch > 0 {
				break
			}
		}
		r.Fits = r.Total <= in.MemBytes
		r.MemoryHeadroomP = float64(r.Total) / float64(in.MemBytes)
		r.ComputeS = fpt * tokensRank / (in.TFLOPS * 1e12)
		// Replicated parameters are reduced over all ranks, each expert's
		// over the DP ranks that hold a copy of it.
		r.AllReduceS = ring(float64(po*f32), in.GPUs) + ring(float64(pr/int64(ep)*f32), dp)
		// Four all-to-alls per MoE layer and micro-batch (dispatch and
		// combine, forward and backward); a share (EP-1)/EP of each rank's
		// K routed copies of a token leaves the rank.
		if ep > 1 {
			perToken := float64(m.ActiveRouted) * float64(m.Hidden) * f32 * float64(ep-1) / float64(ep)
			r.AllToAllS = 4 * float64(moeLayers(m)) * tokensRank * perToken / bw
		}
		r.StepS = r.ComputeS + r.AllReduceS + r.AllToAllS
		r.TokensPerS = float64(t.BatchSize) * float64(t.SeqLen) / r.StepS
		rows = append(rows, r)
	}
	return rows, nil
}

func gcdInt(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func printPlan(w io.Writer, cfg configs.Config, rows []PlanRow, asJSON bool) error {
	if asJSON {
		e := json.NewEncoder(w)
		e.SetIndent("", "  ")
		return e.Encode(rows)
	}
	c := model.Count(cfg.Model)
	fmt.Fprintf(w, "%s total parameters (%s in routed experts), %s activated; batch %d × %d tokens; %.3g FLOPs/token\n\n",
		units.Commas(c.Total), units.Commas(routedParams(cfg.Model)), units.Commas(c.Activated), cfg.Train.BatchSize, cfg.Train.SeqLen,
		model.FLOPsPerToken(cfg.Model, cfg.Train.SeqLen))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "DP\tEP\tmicro\tweights\tgrads\tAdamW\tactivations\ttotal/rank\tfits\tcompute s\tall-reduce s\tall-to-all s\tstep s\ttokens/s\t")
	for _, r := range rows {
		fits := "yes"
		if !r.Fits {
			fits = "NO"
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%.3f\t%.3f\t%.3f\t%.3f\t%.0f\t\n", r.DP, r.EP, r.MicroBatch,
			gib(r.Weights), gib(r.Gradients), gib(r.Optimizer), gib(r.Activations), gib(r.Total), fits,
			r.ComputeS, r.AllReduceS, r.AllToAllS, r.StepS, r.TokensPerS)
	}
	return tw.Flush()
}

func gib(n int64) string { return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30)) }

// parseBytes reads sizes like 80GiB, 40GB, 512MiB, 1.5TiB or a plain byte
// count.
func parseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   float64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
		{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	mult := 1.0
	for _, u := range units {
		if strings.HasSuffix(strings.ToUpper(t), strings.ToUpper(u.suffix)) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || !(v > 0) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is not a positive size such as 80GiB", s)
	}
	return int64(v * mult), nil
}
