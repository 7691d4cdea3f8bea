package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/data/prepare"
)

func init() {
	var o prepare.Options
	var docStart string
	cmd := &cobra.Command{
		Use:   "prepare --out DIR [label=]SOURCE...",
		Short: "Tokenize text files, directories or stdin into a dataset of Arrow token shards",
		Long: `Prepare trains (or loads, with --tokenizer) a byte-level BPE tokenizer and
writes DIR/tokenizer.json, DIR/manifest.json and Arrow IPC token shards.

A SOURCE is a text file, a directory (every file matching --include and not
--exclude is one document) or "-" for standard input, optionally prefixed by
a domain label: prose=kjv.txt code=/usr/local/go/src. A text file or stdin is
one document unless --doc-start splits it (--doc-start kjv: one document per
KJV chapter). The validation split takes --val-fraction of each domain's
documents, chosen with --seed.`,
		Example: `  bible "Gen1:1-Rev22:21" | moetrain prepare --out datasets/kjv --doc-start kjv \
      --include '*.go' --exclude '*_test.go' --exclude testdata prose=- code=/usr/local/go/src`,
		Args: argsUsage(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Out == "" {
				return usagef("--out DIR is required")
			}
			switch docStart {
			case "":
			case "kjv":
				o.DocStart = regexp.MustCompile(prepare.KJVChapter)
			default:
				re, err := regexp.Compile(docStart)
				if err != nil {
					return usagef("--doc-start: %v", err)
				}
				o.DocStart = re
			}
			var sources []prepare.Source
			for _, a := range args {
				s, err := prepare.ParseSource(a)
				if err != nil {
					return asUsage(err)
				}
				sources = append(sources, s)
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			prog := newPrepareProgress(cmd.ErrOrStderr())
			o.Progress = prog.update
			o.Note = func(n string) { fmt.Fprintf(cmd.ErrOrStderr(), "note: %s\n", n) }
			// The built-in tasks are built inside the unpublished dataset, so
			// that no kill leaves a dataset without them.
			var taskReport bytes.Buffer
			o.BeforePublish = func(ctx context.Context, dir string) error {
				return buildTasks(ctx, &taskReport, dir, o.Out, 0) // tasks.go
			}
			man, err := prepare.Run(ctx, sources, o)
			prog.finish()
			var oe *prepare.OptionError
			if errors.As(err, &oe) {
				return asUsage(err)
			}
			if err != nil {
				return err
			}
			tr, va := man.Splits[data.Train], man.Splits[data.Validation]
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %d shards; train %d documents, %d tokens; validation %d documents, %d tokens; vocab %d (%s)\n",
				o.Out, len(man.Shards), tr.Documents, tr.Tokens, va.Documents, va.Tokens, man.Tokenizer.VocabSize, man.Tokenizer.Hash)
			_, err = cmd.OutOrStdout().Write(taskReport.Bytes())
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Out, "out", "", "dataset directory to create (required)")
	f.BoolVar(&o.Force, "force", false, "replace --out if it already holds anything")
	f.StringVar(&o.Tokenizer, "tokenizer", "", "use this tokenizer.json as is instead of training one")
	f.IntVar(&o.VocabSize, "vocab", 8192, "vocab size of the trained tokenizer (the paper's validation models use 8K)")
	f.Int64Var(&o.TrainBytes, "train-bytes", 16<<20, "bytes of text the tokenizer is trained on (a deterministic sample of the train documents, split evenly among domains)")
	f.Int64Var(&o.ShardTokens, "shard-tokens", 1<<24, "tokens per shard file")
	f.Int64Var(&o.RecordTokens, "record-tokens", 8192, "tokens per Arrow record batch")
	f.Float64Var(&o.ValFraction, "val-fraction", 0.01, "fraction of each domain's documents in the validation split")
	f.Uint64Var(&o.Seed, "seed", 1, "seed of the validation split and the tokenizer's sample")
	f.StringVar(&docStart, "doc-start", "", `regexp: a line matching it starts a new document in text files and stdin ("kjv": KJV chapter headings)`)
	f.StringArrayVar(&o.Include, "include", nil, "in directories, read only files whose base name matches this glob (repeatable)")
	f.StringArrayVar(&o.Exclude, "exclude", nil, "in directories, skip files and directories whose base name matches this glob (repeatable)")
	f.IntVar(&o.Workers, "workers", 0, "encoding goroutines (0 = GOMAXPROCS)")
	rootCmd.AddCommand(cmd)
}

// prepareProgress shows a bar (tokens/s, ETA) when stderr is a terminal and
// a plain line every few seconds otherwise.
type prepareProgress struct {
	w     io.Writer
	mu    sync.Mutex
	tty   bool
	p     *mpb.Progress
	bar   *mpb.Bar
	last  prepare.Progress
	phase string
	shown time.Time
	rate  atomic.Uint64 // tokens/s as float64 bits, read by the bar's goroutine
}

func newPrepareProgress(w io.Writer) *prepareProgress {
	pp := &prepareProgress{w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			pp.tty = true
		}
	}
	return pp
}

func tokRate(p prepare.Progress) float64 {
	if s := p.Elapsed.Seconds(); s > 0 {
		return float64(p.Tokens) / s
	}
	return 0
}

func (pp *prepareProgress) update(p prepare.Progress) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	pp.last = p
	if p.Phase != pp.phase {
		pp.phase = p.Phase
		switch p.Phase {
		case "scan":
			fmt.Fprintln(pp.w, "prepare: reading sources")
		case "tokenizer":
			fmt.Fprintf(pp.w, "prepare: %.1f MB of text; training the tokenizer\n", float64(p.TotalBytes)/1e6)
		case "encode":
			fmt.Fprintln(pp.w, "prepare: encoding")
			if pp.tty {
				pp.p = mpb.New(mpb.WithOutput(pp.w), mpb.WithWidth(40))
				pp.bar = pp.p.AddBar(p.TotalBytes,
					mpb.PrependDecorators(decor.Name("encode "), decor.CountersKibiByte("% .1f / % .1f")),
					mpb.AppendDecorators(
						decor.Any(func(decor.Statistics) string {
							return fmt.Sprintf("%8.0f tok/s  ", math.Float64frombits(pp.rate.Load()))
						}),
						decor.Name("ETA "), decor.AverageETA(decor.ET_STYLE_GO)),
				)
			}
		}
	}
	pp.rate.Store(math.Float64bits(tokRate(p)))
	if p.Phase == "encode" || p.Phase == "done" {
		if pp.bar != nil {
			pp.bar.SetCurrent(p.Bytes)
		} else if time.Since(pp.shown) > 5*time.Second || p.Phase == "done" {
			pp.shown = time.Now()
			eta := "?"
			if p.Bytes > 0 {
				eta = (time.Duration(float64(p.Elapsed) * float64(p.TotalBytes-p.Bytes) / float64(p.Bytes))).Round(time.Second).String()
			}
			fmt.Fprintf(pp.w, "prepare: %5.1f%% of %.1f MB, %d tokens, %.0f tok/s, ETA %s\n",
				100*float64(p.Bytes)/float64(max(p.TotalBytes, 1)), float64(p.TotalBytes)/1e6, p.Tokens, tokRate(p), eta)
		}
	}
}

func (pp *prepareProgress) finish() {
	pp.mu.Lock()
	bar, p := pp.bar, pp.p
	pp.mu.Unlock()
	if bar != nil {
		if !bar.Completed() {
			bar.Abort(false)
		}
		p.Wait()
	}
}
