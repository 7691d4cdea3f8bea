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
	cmd := &cobra.Command{
		Use:   "params CONFIG",
		Short: "Count total and activated parameters, FLOPs per token and training memory, without allocating",
		Args:  argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := configs.Load(args[0], sets)
			if err != nil {
				return asUsage(err)
			}
			return printParams(cmd.OutOrStdout(), cfg, asJSON)
		},
	}
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

func printParams(w io.Writer, cfg configs.Config, asJSON bool) error {
	m := cfg.Model
	c := model.Count(m)
	fpt := model.FLOPsPerToken(m, cfg.Train.SeqLen)
	mem := model.EstimateMemory(m, cfg.Train.MicroBatch(), cfg.Train.SeqLen)
	rep := paramsReport{Counts: c, FLOPsPerToken: fpt, FLOPsPer2K: fpt * 2048, SeqLen: cfg.Train.SeqLen,
		TrainMemoryBytes: mem.Total, Memory: mem, MicroBatch: cfg.Train.MicroBatch()}
	for _, p := range model.Layout(m) {
		if p.Int {
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
	fmt.Fprintf(w, "training memory (micro-batch %d × %d, float32)\n", cfg.Train.MicroBatch(), cfg.Train.SeqLen)
	fmt.Fprintf(w, "  weights %s, gradients %s, AdamW state %s, activations %s: total %s\n",
		units.Bytes(mem.Weights), units.Bytes(mem.Gradients), units.Bytes(mem.Optimizer), units.Bytes(mem.Activations), units.Bytes(mem.Total))
	return nil
}
