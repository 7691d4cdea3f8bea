package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/infer"
	"github.com/moetrain/moetrain/internal/termtext"
)

func init() {
	var (
		prompt      string
		maxTokens   int
		temperature float64
		topP        float64
		seed        uint64
		dataDir     string
	)
	cmd := &cobra.Command{
		Use:   "generate RUN_DIR|CHECKPOINT --prompt TEXT [--max-tokens N] [--temperature T] [--top-p P] [--seed S]",
		Short: "Continue a prompt with a trained model, streaming tokens as they are chosen",
		Long: `Continue a prompt with the newest checkpoint of a run directory (or one
checkpoint directory), token by token with a key/value cache.

Temperature 0 (the default) decodes greedily; above 0 tokens are sampled from
softmax(logits/T), restricted to the most probable tokens whose probabilities
sum to --top-p. --seed fixes the draws. The prompt is read as the start of a
document (after the end-of-document token, as in training); generation stops
at the end of a document, after --max-tokens tokens, or when the model's
context (train.seq_len) is full. --prompt - reads the prompt from stdin.
The tokenizer is the run's dataset's (data.path, or --data).`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("prompt") {
				return usagef("--prompt is required (--prompt - reads stdin)")
			}
			if maxTokens < 1 {
				return usagef("--max-tokens %d: want >= 1", maxTokens)
			}
			sampler, err := infer.NewSampler(temperature, topP, seed)
			if err != nil {
				return usagef("%v", err)
			}
			if prompt == "-" {
				raw, err := io.ReadAll(cmd.InOrStdin())
				if err != nil {
					return fmt.Errorf("read the prompt from stdin: %w", err)
				}
				prompt = string(raw)
			}
			l, err := loadModel(args[0])
			if err != nil {
				return err
			}
			dir, err := runDataset(l, dataDir)
			if err != nil {
				return err
			}
			man, err := data.LoadManifest(dir)
			if err != nil {
				return err
			}
			tok, err := data.LoadTokenizer(dir, man)
			if err != nil {
				return err
			}
			if tok.VocabSize() != l.Model.Cfg.VocabSize {
				return usagef("the tokenizer of %s has %d ids, the model %d", dir, tok.VocabSize(), l.Model.Cfg.VocabSize)
			}
			if _, err := initBLAS(cmd.ErrOrStderr()); err != nil {
				return err
			}
			ctxLen := l.State.Config.Train.SeqLen
			eos := man.Tokenizer.EOS
			ids := append([]int{eos}, tok.Encode(prompt)...)
			if len(ids) > ctxLen {
				return usagef("the prompt is %d tokens (with the start-of-document token); the model's context is %d", len(ids), ctxLen)
			}
			d, err := infer.New(l.Model, ctxLen)
			if errors.Is(err, infer.ErrExpertChoice) {
				return asUsage(err)
			}
			if err != nil {
				return err
			}
			w := bufio.NewWriter(cmd.OutOrStdout())
			// Tokens are bytes: shown through termtext, a character split
			// over two tokens prints whole and bytes that are not text
			// print as U+FFFD (the tokens themselves are unchanged).
			tw := termtext.New(w)
			tw.Write([]byte(prompt))
			var werr error
			gen, err := d.Generate(ids, infer.GenerateOptions{MaxTokens: maxTokens, Sampler: sampler, Stop: []int{eos}}, func(id int) bool {
				if id == eos {
					return false
				}
				tw.Write(tok.TokenBytes(id))
				// Flush per token: the point is to watch it appear.
				werr = w.Flush()
				return werr == nil
			})
			if err != nil {
				return err
			}
			if werr != nil {
				return fmt.Errorf("write: %w", werr)
			}
			tw.Close()
			w.WriteString("\n")
			if err := w.Flush(); err != nil {
				return fmt.Errorf("write: %w", err)
			}
			switch {
			case len(gen) > 0 && gen[len(gen)-1] == eos:
				fmt.Fprintln(os.Stderr, "(end of document)")
			case len(gen) < maxTokens:
				fmt.Fprintf(os.Stderr, "(the model's context of %d tokens is full)\n", ctxLen)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&prompt, "prompt", "", "text to continue (- reads stdin)")
	cmd.Flags().IntVar(&maxTokens, "max-tokens", 128, "the most tokens generated")
	cmd.Flags().Float64Var(&temperature, "temperature", 0, "sampling temperature (0: greedy)")
	cmd.Flags().Float64Var(&topP, "top-p", 1, "nucleus sampling: keep the most probable tokens up to this probability mass")
	cmd.Flags().Uint64Var(&seed, "seed", 1, "random seed of the sampler")
	cmd.Flags().StringVar(&dataDir, "data", "", "dataset whose tokenizer to use (default: the run's data.path)")
	rootCmd.AddCommand(cmd)
}
