package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/hf"
	"github.com/moetrain/moetrain/internal/units"
)

func init() {
	var out string
	var sets []string
	cmd := &cobra.Command{
		Use:   "import DIR --out RUN_DIR [--set key=value]...",
		Short: "Import a Hugging Face DeepseekForCausalLM directory as a run that train continues",
		Long: `Import DIR (config.json plus safetensors weights: model.safetensors, shards with
model.safetensors.index.json, or one *.safetensors file) into a new run directory:
RUN_DIR/config.yaml, the moetrain config mapped from config.json (train.seq_len =
max_position_embeddings; other sections default, e.g. data.path datasets/kjv;
override with --set), and a checkpoint at 0 tokens with the weights and no
optimizer state. Then

  moetrain train RUN_DIR/config.yaml --run-dir RUN_DIR   continues training (AdamW from zero moments)

n_shared_experts 0 and null mean the same. Missing, unexpected or mis-shaped
tensors are all listed in one error.`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usagef("--out is required")
			}
			st, err := os.Stat(args[0])
			if err != nil {
				return usagef("%s: %v", args[0], errors.Unwrap(err))
			}
			if !st.IsDir() {
				return usagef("%s is a file; want the directory holding config.json and the safetensors weights", args[0])
			}
			res, err := hf.Import(args[0], hf.ImportOptions{RunDir: out, Sets: sets})
			var ce *configs.Error
			if errors.Is(err, hf.ErrRunExists) || errors.As(err, &ce) {
				return asUsage(err)
			}
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "imported %s into %s\n", args[0], out)
			fmt.Fprintf(w, "  weights      %s (%s tensors)\n", strings.Join(res.Files, ", "), units.Commas(int64(res.Tensors)))
			if res.MoELayers > 0 {
				fmt.Fprintf(w, "  experts      %d routed experts in %d MoE layers\n", res.Experts, res.MoELayers)
			}
			fmt.Fprintf(w, "  model        ffn %s, %d layers, hidden %d, vocab %d\n", res.Config.Model.FFN, res.Config.Model.Layers, res.Config.Model.Hidden, res.Config.Model.VocabSize)
			fmt.Fprintf(w, "  checkpoint   %s\n", res.Checkpoint)
			fmt.Fprintf(w, "continue training with: moetrain train %s/config.yaml --run-dir %s\n", out, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "run directory to create")
	cmd.Flags().StringArrayVar(&sets, "set", nil, "override a config key (key=value, value parsed as YAML), e.g. data.path=datasets/kjv")
	rootCmd.AddCommand(cmd)
}
