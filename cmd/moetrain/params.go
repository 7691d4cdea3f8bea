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
)

func init() {
	var asJSON bool
	var sets []string
	var micro int
	cmd := &cobra.Command{
		Use:   "params CONFIG",
		Short: "Count total and activated parameters, FLOPs per token and training memory, without allocating",
		Args:  argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := configs.Load(args[0], sets)
			if err != nil {
				return asUsage(err)
			}
			if cmd.Flags().Changed("micro-batch") && micro < 1 {
				return usagef("--micro-batch must be at least 1, got %d", micro)
			}
			if !cmd.Flags().Changed("micro-batch") {
				micro = cfg.Train.MicroBatchSize
			}
			return printParams(cmd.OutOrStdout(), cfg, micro, asJSON)
		},
	}
	cmd.Flags().IntVar(&micro, "micro-batch", 0, "sequences per micro-batch for the training memory (default: train.micro_batch_size, or 1 when unset)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	cmd.Flags().StringArrayVar(&sets, "set", nil, "override a config key (key=value, value parsed as YAML)")
	rootCmd.AddCommand(cmd)
}

// paramsReport is the JSON form of `moetrain params`.
type paramsReport struct {
	model.Counts
	FLOPsPerToken    float64      `json:"flops_per_token"`
	FLOPsPer2K       float64      `json:"flops_per_2k_tokens"`
	SeqLen           int          `json:"seq_len"`
	TrainMemoryBytes int64        `json:"train_memory_bytes"`
	Memory           model.Memory `json:"memory"`
	MicroBatch       int          `json:"micro_batch"`
	Tensors          []tensorRow  `json:"tensors"`
}

type tensorRow struct {
	Name    string `json:"name"`
	Shape   []int  `json:"shape"`
	Experts int    `json:"experts,omitempty"`
	Count   int64  `json:"count"`
}

// printParams reports the counts and the training memory of one process at
// micro-batches of micro sequences (1 when 0: the memory of one sequence,
// never of the whole global batch unless asked for).
func printParams(w io.Writer, cfg configs.Config, micro int, asJSON bool) error {
	m := cfg.Model
	c := model.Count(m)
	fpt := model.FLOPsPerToken(m, cfg.Train.SeqLen)
	if micro == 0 {
		micro = 1
	}
	mem := model.EstimateMemory(m, micro, cfg.Train.SeqLen)
	rep := paramsReport{Counts: c, FLOPsPerToken: fpt, FLOPsPer2K: fpt * 2048, SeqLen: cfg.Train.SeqLen,
		TrainMemoryBytes: mem.Total, Memory: mem, MicroBatch: micro}
	for _, p := range model.Layout(m) {
		if !p.Trained() {
			continue
		}
		rep.Tensors = append(rep.Tensors, tensorRow{Name: p.Name, Shape: p.Shape, Experts: p.Experts, Count: p.Size()})
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "name\tshape\tcount\t")
	for _, r := range rep.Tensors {
		shape := fmt.Sprint(r.Shape)
		if r.Experts > 0 {
			shape = fmt.Sprintf("%d × %v", r.Experts, r.Shape[1:])
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t\n", r.Name, shape, units.Commas(r.Count))
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintf(w, "total parameters            %s (%s without embedding and lm_head)\n", units.Commas(c.Total), units.Commas(c.TotalNoEmbed))
	fmt.Fprintf(w, "activated parameters        %s (%s without embedding and lm_head)\n", units.Commas(c.Activated), units.Commas(c.ActivatedNoEmbed))
	fmt.Fprintf(w, "FLOPs per token (seq %d)   %.4g  (%.3gT per 2K tokens; DESIGN.md §7.3: 6·(activated − V·d) + 12·L·seq·d)\n", cfg.Train.SeqLen, fpt, fpt*2048/1e12)
	fmt.Fprintf(w, "training memory, one process, micro-batch of %d × %d tokens (--micro-batch), float32 as moetrain trains\n", micro, cfg.Train.SeqLen)
	fmt.Fprintf(w, "  weights %s, gradients %s, AdamW state %s, activations %s: total %s\n",
		units.Bytes(mem.Weights), units.Bytes(mem.Gradients), units.Bytes(mem.Optimizer), units.Bytes(mem.Activations), units.Bytes(mem.Total))
	if cfg.Train.MicroBatchSize == 0 && cfg.Train.BatchSize != micro {
		fmt.Fprintf(w, "  (train.micro_batch_size is unset: train runs all %d sequences of a batch at once; --micro-batch %d prices that)\n", cfg.Train.BatchSize, cfg.Train.BatchSize)
	}
	fmt.Fprintln(w, "  other precisions, optimizer sharding, recomputation and parallel layouts: moetrain plan")
	return nil
}
