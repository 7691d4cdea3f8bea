package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/internal/units"
	"github.com/moetrain/moetrain/rundir"
	"github.com/moetrain/moetrain/upcycle"
)

func init() {
	var cfgPath, out string
	var sets []string
	cmd := &cobra.Command{
		Use:   "upcycle DENSE_RUN_OR_CHECKPOINT --config MOE.yaml --out RUN_DIR [--set key=value]...",
		Short: "Start an MoE run from a trained dense model (sparse upcycling)",
		Long: `Initialise the MoE model of MOE.yaml from the newest checkpoint of a dense run
(or one checkpoint directory) and write it to RUN_DIR as a run at 0 tokens:
RUN_DIR/config.yaml (MOE.yaml with --set applied) and a checkpoint with the
weights and no optimizer state. The embedding, attention, norms, output head
and the FFNs of layers that stay dense are copied; every router starts fresh
from model.init_seed. GShard and Switch experts are copies of the dense FFN
(expert_width = dense_width); DeepSeekMoE's fine-grained experts are slices of
its intermediate dimension, shared experts first (docs/CONFIG.md, "Upcycling").
The two configs must agree on vocab_size, hidden, layers, heads, dense_width,
rope_theta and norm_eps. Then

  moetrain train RUN_DIR/config.yaml --run-dir RUN_DIR   trains the MoE`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cfgPath == "" || out == "" {
				return usagef("--config and --out are required")
			}
			if _, err := os.Stat(args[0]); err != nil {
				return usagef("%s: %v", args[0], errors.Unwrap(err))
			}
			cfg, err := configs.Load(cfgPath, sets)
			if err != nil {
				return asUsage(err)
			}
			l, err := rundir.LoadModel(args[0])
			if err != nil {
				return err
			}
			m, err := upcycle.Upcycle(l.Model, cfg.Model)
			var ce *configs.Error
			if errors.As(err, &ce) {
				ce.Source = cfgPath + " against " + l.Dir
				return asUsage(err)
			}
			if err != nil {
				return err
			}
			ck, err := rundir.NewRun(out, cfg, m)
			if errors.Is(err, rundir.ErrRunExists) {
				return asUsage(err)
			}
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "upcycled %s (%s tokens of dense training) into %s\n", l.Dir, units.Commas(l.State.Tokens), out)
			fmt.Fprintf(w, "  model        ffn %s, %d routed experts of width %d, %d shared, top-%d\n", cfg.Model.FFN, cfg.Model.RoutedExperts, cfg.Model.ExpertWidth, cfg.Model.SharedExperts, cfg.Model.ActiveRouted)
			fmt.Fprintf(w, "  checkpoint   %s\n", ck)
			fmt.Fprintf(w, "train it with: moetrain train %s/config.yaml --run-dir %s\n", out, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "the MoE config (YAML)")
	cmd.Flags().StringVar(&out, "out", "", "run directory to create")
	cmd.Flags().StringArrayVar(&sets, "set", nil, "override a key of the MoE config (key=value, value parsed as YAML)")
	rootCmd.AddCommand(cmd)
}
