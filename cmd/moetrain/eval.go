package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/evaluate"
	"github.com/moetrain/moetrain/internal/blas"
	"github.com/moetrain/moetrain/internal/units"
	"github.com/moetrain/moetrain/rundir"
	"github.com/moetrain/moetrain/tasks"
)

func init() {
	var (
		taskList string
		noTasks  bool
		dataDir  string
		asJSON   bool
		tokens   int64
		limit    int
		strict   bool
	)
	cmd := &cobra.Command{
		Use:   "eval RUN_DIR|CHECKPOINT [--tasks a,b] [--data DIR] [--json]",
		Short: "Held-out loss and bits per byte (overall and per domain) and task scores of a trained model",
		Long: `Evaluate the newest checkpoint of a run directory (or one checkpoint directory).

Held-out: mean cross-entropy (nats per token) and bits per byte on the
validation split of the run's dataset (data.path in its config), or of any
prepared dataset with the same tokenizer (--data), overall and for each domain.
By default it scores the split's first eval.tokens tokens (the run's config):
the held-out loss of the run's in-training evaluations, the one number that
compare, plot and serve report. --tokens 0 scores the whole split.

Tasks: every DATASET/tasks/*.jsonl, or those named by --tasks: multiple choice
scored by log-likelihood (acc, acc_norm) and generation by greedy decoding
(exact_match). The format is in docs/TASKS.md. A context longer than the
model's (train.seq_len) is cut from the left, as during training, with a note
on stderr; --strict makes it an error naming the file and line.`,
		Args: argsUsage(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if tokens < -1 || limit < 0 {
				return usagef("--tokens must be >= 0 (or -1, the run's eval.tokens) and --limit >= 0")
			}
			var names []string
			if taskList != "" {
				for _, n := range strings.Split(taskList, ",") {
					if n = strings.TrimSpace(n); n != "" {
						names = append(names, n)
					}
				}
			}
			if noTasks && len(names) > 0 {
				return usagef("--tasks and --no-tasks together")
			}
			l, err := loadModel(args[0])
			if err != nil {
				return err
			}
			dir, err := runDataset(l, dataDir)
			if err != nil {
				return err
			}
			if _, err := initBLAS(cmd.ErrOrStderr()); err != nil {
				return err
			}
			cfg := l.State.Config
			// Score with the run's products, as its in-training evaluations did.
			if err := blas.SetBF16Products(cfg.Train.BF16Products()); err != nil {
				fmt.Fprintf(os.Stderr, "note: the run trained with bf16 products, which this machine cannot run (%v); scoring with float32 products, so the numbers may differ from the run's in their last digits\n", err)
			}
			e, err := evaluate.New(l.Model, cfg, evaluate.Options{Data: dir, Tasks: names, NoTasks: noTasks, TaskLimit: limit, Truncate: !strict})
			var te *tasks.Error
			if errors.Is(err, tasks.ErrNoTask) || errors.As(err, &te) {
				return asUsage(err)
			}
			if err != nil {
				return err
			}
			defer e.Close()
			for _, n := range e.Notes() {
				fmt.Fprintf(os.Stderr, "note: %s\n", n)
			}
			warnTokenizer(l, dir, e.Manifest())
			rep := evalReport{Checkpoint: l.Dir, Tokens: l.State.Tokens, FFN: cfg.Model.FFN, Dataset: dir, SeqLen: cfg.Train.SeqLen}
			if ok, why := e.HasHeldOut(); ok {
				// The held-out number is defined once: the first eval.tokens
				// tokens of the validation split, as the run's in-training
				// evaluations (compare, plot, serve) score it.
				if tokens < 0 {
					tokens = cfg.Eval.Tokens
				}
				rep.HeldOutScope = heldOutScope(tokens, cfg.Eval.Tokens)
				h, err := e.HeldOut(tokens, true)
				if err != nil {
					return err
				}
				rep.HeldOut = &h
			} else {
				fmt.Fprintf(os.Stderr, "warning: no held-out evaluation: %v\n", why)
			}
			if len(e.Tasks()) == 0 && !noTasks {
				fmt.Fprintf(os.Stderr, "note: %s has no task files (tasks/*.jsonl)\n", dir)
			}
			rep.Tasks, err = e.ScoreTasks(func(r tasks.Result) {
				if !asJSON && isTerminal(os.Stderr) {
					fmt.Fprintf(os.Stderr, "scored %s (%d examples)\n", r.Task, r.Examples)
				}
			})
			if err != nil {
				return err
			}
			return printEval(cmd.OutOrStdout(), rep, asJSON)
		},
	}
	cmd.Flags().StringVar(&taskList, "tasks", "", "comma-separated task names to score (default: every task file of the dataset)")
	cmd.Flags().BoolVar(&noTasks, "no-tasks", false, "held-out loss only")
	cmd.Flags().StringVar(&dataDir, "data", "", "prepared dataset to evaluate on (default: the run's data.path)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	cmd.Flags().Int64Var(&tokens, "tokens", -1, "score the first this many held-out tokens (-1: the run's eval.tokens, the number compare and plot report; 0: the whole validation split)")
	cmd.Flags().IntVar(&limit, "limit", 0, "score at most this many examples per task (0: all)")
	cmd.Flags().BoolVar(&strict, "strict", false, "fail on a task example longer than the model's context instead of cutting its context from the left (as training does)")
	rootCmd.AddCommand(cmd)
}

// evalReport is the JSON form of `moetrain eval`.
type evalReport struct {
	Checkpoint string           `json:"checkpoint"`
	Tokens     int64            `json:"tokens"` // training tokens of the checkpoint
	FFN        string           `json:"ffn"`
	Dataset    string           `json:"dataset"`
	SeqLen     int              `json:"seq_len"`
	HeldOut    *evaluate.Result `json:"heldout,omitempty"`
	// HeldOutScope says which held-out tokens were scored.
	HeldOutScope string         `json:"heldout_scope,omitempty"`
	Tasks        []tasks.Result `json:"tasks"`
}

func printEval(w io.Writer, r evalReport, asJSON bool) error {
	if r.Tasks == nil {
		r.Tasks = []tasks.Result{}
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(w, "model    %s (%s training tokens, ffn %s, context %d)\n", r.Checkpoint, units.Commas(r.Tokens), r.FFN, r.SeqLen)
	fmt.Fprintf(w, "dataset  %s\n", r.Dataset)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if h := r.HeldOut; h != nil {
		fmt.Fprintf(w, "\nheld-out: %s\n", r.HeldOutScope)
		fmt.Fprintln(tw, "held-out\ttokens\tbytes\tloss\tbits/byte\t")
		fmt.Fprintf(tw, "all\t%s\t%s\t%.4f\t%.4f\t\n", units.Commas(h.Tokens), units.Commas(h.Bytes), h.Loss, h.BPB)
		doms := make([]string, 0, len(h.Domains))
		for d := range h.Domains {
			doms = append(doms, d)
		}
		sort.Strings(doms)
		for _, d := range doms {
			x := h.Domains[d]
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.4f\t%.4f\t\n", d, units.Commas(x.Tokens), units.Commas(x.Bytes), x.Loss, x.BPB)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(r.Tasks) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(tw, "task\tkind\texamples\tmetric\tvalue\tchance\t")
		for _, t := range r.Tasks {
			for i, m := range t.Metrics {
				name, kind, n, chance := t.Task, t.Kind, units.Commas(int64(t.Examples)), ""
				if t.Chance > 0 {
					chance = fmt.Sprintf("%.4f", t.Chance)
				}
				if i > 0 {
					name, kind, n, chance = "", "", "", ""
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.4f\t%s\t\n", name, kind, n, m.Name, m.Value, chance)
			}
		}
		return tw.Flush()
	}
	return nil
}

// runDataset is --data when given (a usage error when it is not a prepared
// dataset), else the run's own dataset (rundir.Loaded.Dataset).
func runDataset(l *rundir.Loaded, override string) (string, error) {
	if override != "" {
		if _, err := data.LoadManifest(override); err != nil {
			return "", usagef("--data %s: %v", override, err)
		}
		return override, nil
	}
	dir, err := l.Dataset()
	if err != nil {
		return "", fmt.Errorf("%w; pass --data DIR", err)
	}
	return dir, nil
}

// warnTokenizer warns when the evaluated dataset was encoded with another
// tokenizer than the run's own dataset (same vocabulary size, other ids:
// the scores would be meaningless).
func warnTokenizer(l *rundir.Loaded, dir string, man *data.Manifest) {
	own, err := runDataset(l, "")
	if err != nil || own == dir {
		return
	}
	m, err := data.LoadManifest(own)
	if err == nil && m.Tokenizer.Hash != man.Tokenizer.Hash {
		fmt.Fprintf(os.Stderr, "warning: %s was encoded with another tokenizer than the run's dataset %s: the model reads different ids\n", dir, own)
	}
}

// heldOutScope says which held-out tokens `eval` scored, and whether that
// is the number the run's own evaluations (compare, plot) report.
func heldOutScope(tokens, evalTokens int64) string {
	switch {
	case tokens == evalTokens && tokens > 0:
		return fmt.Sprintf("the first %s tokens of the validation split (eval.tokens): the held-out loss compare, plot and serve report", units.Commas(tokens))
	case tokens == 0 && evalTokens == 0:
		return "the whole validation split (eval.tokens 0): the held-out loss compare, plot and serve report"
	case tokens == 0:
		return fmt.Sprintf("the whole validation split (--tokens 0); compare, plot and serve report its first %s tokens (eval.tokens)", units.Commas(evalTokens))
	}
	return fmt.Sprintf("the first %s tokens of the validation split (--tokens); compare, plot and serve report the first %s (eval.tokens)", units.Commas(tokens), units.Commas(evalTokens))
}
