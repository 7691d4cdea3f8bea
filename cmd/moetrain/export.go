package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/hf"
	"github.com/moetrain/moetrain/internal/units"
	"github.com/moetrain/moetrain/rundir"
)

func init() {
	var format, out, dtype, shard, tok string
	cmd := &cobra.Command{
		Use:   "export CHECKPOINT|RUN_DIR --format hf --out DIR [--dtype fp32|bf16] [--shard-size 5GB]",
		Short: "Export a trained model as a Hugging Face DeepseekForCausalLM directory",
		Long: `Export the newest valid checkpoint of RUN_DIR (or one checkpoint directory) in the
public DeepseekForCausalLM layout: config.json, generation_config.json, the weights
as model.safetensors (or shards plus model.safetensors.index.json above
--shard-size) and the run's tokenizer as tokenizer.json (from data.path's
dataset manifest, or --tokenizer). Every file is read back and checked against
the model, every routed expert of every MoE layer included, before the
directory appears at --out.

Dense, DeepSeekMoE, GShard and Switch models export; Hash models cannot (the
DeepSeek code has no hash router). Load the result in transformers with
trust_remote_code and DeepSeek's public modeling_deepseek.py.`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "hf" {
				return usagef("--format %q: the one export format is hf", format)
			}
			if out == "" {
				return usagef("--out is required")
			}
			dt, err := hf.ParseDType(dtype)
			if err != nil {
				return asUsage(fmt.Errorf("--dtype: %w", err))
			}
			size, err := units.ParseBytes(shard)
			if err != nil {
				return asUsage(fmt.Errorf("--shard-size: %w", err))
			}
			if _, err := os.Stat(args[0]); err != nil {
				return usagef("%s: %v", args[0], errors.Unwrap(err))
			}
			l, err := loadModel(args[0])
			if err != nil {
				return err
			}
			if tok == "" {
				if tok, err = runTokenizer(l); err != nil {
					return err
				}
			}
			res, err := hf.Export(l.Model, hf.ExportOptions{Out: out, DType: dt, ShardSize: size,
				MaxPositions: l.State.Config.Train.SeqLen, Tokenizer: tok})
			if errors.Is(err, hf.ErrUnsupported) || errors.Is(err, hf.ErrExists) {
				return asUsage(err)
			}
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "exported %s (%s tokens) to %s\n", l.Dir, units.Commas(l.State.Tokens), res.Dir)
			fmt.Fprintf(w, "  weights      %s, %s tensors, %s bytes (%s)\n", strings.Join(res.Files, ", "), units.Commas(int64(res.Tensors)), units.Commas(res.Bytes), dt)
			if res.MoELayers > 0 {
				fmt.Fprintf(w, "  experts      %d routed experts in %d MoE layers, every one read back and verified\n", res.Experts, res.MoELayers)
			}
			fmt.Fprintf(w, "  tokenizer    %s\n", tok)
			return nil
		},
	}
	cmd.Flags().StringVar(&format, "format", "hf", "export format (hf: Hugging Face DeepseekForCausalLM)")
	cmd.Flags().StringVar(&out, "out", "", "output directory (must not exist or be empty)")
	cmd.Flags().StringVar(&dtype, "dtype", "fp32", "weight dtype: fp32 or bf16")
	cmd.Flags().StringVar(&shard, "shard-size", "5GB", "most tensor bytes per safetensors file (e.g. 500MB, 2GiB)")
	cmd.Flags().StringVar(&tok, "tokenizer", "", "tokenizer.json to export (default: the run's dataset tokenizer)")
	rootCmd.AddCommand(cmd)
}

// runTokenizer finds the tokenizer the run trained with: data.path's
// manifest names it. A relative data.path is tried from the working
// directory, then from the run directory's parent.
func runTokenizer(l *rundir.Loaded) (string, error) {
	p := l.State.Config.Data.Path
	cands := []string{p}
	if !filepath.IsAbs(p) {
		// l.Dir is RUN/checkpoints/tokens-N.
		run := filepath.Dir(filepath.Dir(l.Dir))
		cands = append(cands, filepath.Join(filepath.Dir(run), p), filepath.Join(run, p))
	}
	var firstErr error
	for _, dir := range cands {
		man, err := data.LoadManifest(dir)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		// The file shipped must be the one the model was trained with.
		if _, err := data.LoadTokenizer(dir, man); err != nil {
			return "", err
		}
		return filepath.Join(dir, man.Tokenizer.File), nil
	}
	return "", fmt.Errorf("find the run's tokenizer (data.path %s): %w; pass --tokenizer FILE", p, firstErr)
}
