package main

import (
	"errors"
	"fmt"

	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moetrain/moetrain/analysis"
	"github.com/moetrain/moetrain/checkpoints"
	"github.com/moetrain/moetrain/rundir"
)

func init() {
	var (
		what      []string
		o         analysis.Options
		out       string
		overSeeds string
	)
	cmd := &cobra.Command{
		Use:   "analyze RUN_DIR|CHECKPOINT --what redundancy|topk|load|tokens|churn [--what ...]",
		Short: "Expert analyses of a trained MoE on held-out text: redundancy, fewer active experts, per-domain load, routing by token id, routing churn",
		Long: `Evaluate a trained MoE model on held-out text with its experts used differently,
without changing its weights, and write a table (markdown + CSV) and, except
for tokens, a plot (PNG + SVG) per analysis into --out (default
RUN_DIR/analysis):

  redundancy  disable each token's top r routed experts (the next K' take their
              place, gates = their raw probabilities), r = 0 .. round(N'/4):
              the held-out loss increase (the paper's Fig. 4)
  topk        activate 1 .. K' routed experts instead of the trained K' (Fig. 5)
  load        per MoE layer and domain (prose, code): every expert's load, the
              router entropy, the Jensen-Shannon divergence between the
              domains' load distributions and each expert's top-domain share
  tokens      per MoE layer: how far the routing is a function of the input
              token's id: H(expert), effective experts exp H, H(expert | token
              id), the share of the routing the id decides, the token purity
              (share of slots on each id's K most frequent experts), max load
              over mean and the mean gate per token; analysis-tokens-ids.csv
              gives each id's most frequent expert (works on Hash models too)
  churn       RUN_DIR only: the same held-out tokens routed by each of the
              run's checkpoints (keep them with checkpoint.keep_every_tokens);
              per MoE layer, the share of slots whose expert moved since the
              previous checkpoint and the share differing from the last

With --over-seeds DIR instead of RUN_DIR, nothing is evaluated or written: the
tokens or churn tables already written into DIR/NAME_seed-N (one --out per
run) are printed as one table, each number the mean ± sample standard
deviation over the seeds of NAME.`,
		Example: `  moetrain analyze runs/table1/deepseekmoe_seed-1 --what redundancy --what topk --what load
  moetrain analyze runs/table1/switch_seed-1 --what tokens --tokens 65536 --out /tmp/switch-tokens
  moetrain analyze runs/table1/switch_seed-1 --what churn --tokens 65536
  moetrain analyze --over-seeds tokens --what tokens    # tokens/switch_seed-1 ... written with --out`,
		Args: argsUsage(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(what) == 0 {
				return usagef("--what is required (redundancy, topk, load, tokens or churn)")
			}
			if overSeeds != "" {
				if len(args) > 0 {
					return usagef("--over-seeds summarises written analyses: give no RUN_DIR (got %s)", args[0])
				}
				for _, wh := range what {
					t, err := analysis.OverSeeds(overSeeds, wh)
					if errors.Is(err, analysis.ErrNotSummarisable) {
						return asUsage(err)
					} else if err != nil {
						return err
					}
					if err := t.Markdown(cmd.OutOrStdout()); err != nil {
						return err
					}
					fmt.Fprintln(cmd.OutOrStdout())
				}
				return nil
			}
			if len(args) != 1 {
				return usagef("give the RUN_DIR or CHECKPOINT to analyse (or --over-seeds DIR)")
			}
			for _, w := range what {
				if w != "redundancy" && w != "topk" && w != "load" && w != "tokens" && w != "churn" {
					return usagef("--what %q: want redundancy, topk, load, tokens or churn", w)
				}
			}
			l, err := loadModel(args[0])
			if err != nil {
				return err
			}
			if l.Model.Cfg.Router.ExpertChoice {
				return usagef("%s routes by expert choice (model.router.expert_choice): the analyses disable, vary or count each token's top-k experts, which expert choice does not have", args[0])
			}
			// The analyses evaluate the model: without this every product ran in pure Go.
			if _, err := initBLAS(cmd.ErrOrStderr()); err != nil {
				return err
			}
			if out == "" {
				out = filepath.Join(args[0], "analysis")
			}
			label := filepath.Base(filepath.Clean(args[0]))
			if filepath.Base(filepath.Dir(l.Dir)) == "checkpoints" {
				label = filepath.Base(filepath.Dir(filepath.Dir(l.Dir))) + " at " + fmt.Sprint(l.State.Tokens) + " tokens"
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "model %s (%s, %d routed experts, %d active) from %s\n", label, l.State.Config.Model.FFN,
				l.State.Config.Model.RoutedExperts, l.State.Config.Model.ActiveRouted, l.Dir)
			for _, wh := range what {
				var files analysis.Written
				switch wh {
				case "redundancy", "topk":
					f := analysis.Redundancy
					if wh == "topk" {
						f = analysis.TopK
					}
					cv, err := f(l, o)
					if err != nil {
						return asUsageIfNoRouter(err)
					}
					if err := cv.Table().Markdown(w); err != nil {
						return err
					}
					if files, err = analysis.WriteCurve(cv, out, label); err != nil {
						return err
					}
				case "load":
					res, err := analysis.Load(l, o)
					if err != nil {
						return asUsageIfNoRouter(err)
					}
					t, _ := res.Tables()
					if err := t.Markdown(w); err != nil {
						return err
					}
					if files, err = analysis.WriteLoad(res, out, label); err != nil {
						return err
					}
				case "churn":
					dirs, err := runCheckpoints(args[0], l)
					if err != nil {
						return err
					}
					load := func(i int) (*rundir.Loaded, error) {
						if filepath.Clean(dirs[i]) == filepath.Clean(l.Dir) {
							return l, nil // the newest, loaded above
						}
						m, err := rundir.LoadModel(dirs[i])
						if err != nil {
							return nil, fmt.Errorf("checkpoint %s: %w", dirs[i], err)
						}
						return m, nil
					}
					res, err := analysis.Churn(len(dirs), load, o)
					if err != nil {
						return asUsageIfNoRouter(err)
					}
					if err := res.Table().Markdown(w); err != nil {
						return err
					}
					if files, err = analysis.WriteChurn(res, out, label); err != nil {
						return err
					}
				case "tokens":
					res, err := analysis.Tokens(l, o)
					if err != nil {
						return asUsageIfNoRouter(err)
					}
					t, _ := res.Tables()
					if err := t.Markdown(w); err != nil {
						return err
					}
					if files, err = analysis.WriteTokens(res, out, label); err != nil {
						return err
					}
				}
				fmt.Fprintf(w, "\nwrote %s\n\n", strings.Join(files, ", "))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&what, "what", nil, "analysis to run: redundancy, topk, load, tokens or churn (repeatable)")
	f.StringVar(&o.Data, "data", "", "dataset directory (default: the run's data.path)")
	f.Int64Var(&o.Tokens, "tokens", 0, "held-out tokens per evaluation, per domain for load (default 65536)")
	f.IntVar(&o.Batch, "batch", 0, "sequences per forward pass (default: the run's micro-batch)")
	f.StringVar(&out, "out", "", "output directory (default RUN_DIR/analysis)")
	f.StringVar(&overSeeds, "over-seeds", "", "print the tokens or churn analyses written into `DIR`/NAME_seed-N as mean ± std over seeds (no RUN_DIR)")
	rootCmd.AddCommand(cmd)
}

// asUsageIfNoRouter makes "this model has no router/experts" a usage error:
// the user picked an analysis that does not apply to the model.
func asUsageIfNoRouter(err error) error {
	if s := err.Error(); strings.Contains(s, "no experts") || strings.Contains(s, "no router") {
		return asUsage(err)
	}
	return err
}

// runCheckpoints lists the checkpoint directories of the run directory dir,
// oldest first, for the churn analysis (which loads them one at a time). A
// checkpoint directory, or a run with one checkpoint, is a usage error.
func runCheckpoints(dir string, newest *rundir.Loaded) ([]string, error) {
	if filepath.Clean(newest.Dir) == filepath.Clean(dir) || filepath.Base(filepath.Dir(filepath.Clean(dir))) == "checkpoints" {
		return nil, usagef("--what churn compares a run's checkpoints: give the run directory, not %s", dir)
	}
	infos, err := checkpoints.List(dir)
	if err != nil {
		return nil, err
	}
	if len(infos) < 2 {
		return nil, usagef("--what churn needs at least 2 checkpoints in %s, found %d (keep more with checkpoint.keep_every_tokens)", dir, len(infos))
	}
	var dirs []string
	for _, in := range infos {
		dirs = append(dirs, in.Dir)
	}
	return dirs, nil
}
