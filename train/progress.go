package train

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/moetrain/moetrain/internal/units"
)

// progress shows training progress on the terminal; log lines print above
// it. The log lines themselves (train.log and the screen) are the same with
// either kind.
type progress interface {
	update(tokens int64, tokensPerS, loss float64)
	println(line string)
	finish()
}

// heartbeat is how often, without a terminal, a progress line is printed
// when no log line came in between (a long log interval would otherwise
// leave the screen silent for minutes).
var heartbeat = 30 * time.Second

// ticker is the progress of a run without a terminal (or with --plain):
// plain lines, a heartbeat one when no log line was printed for a while.
type ticker struct {
	out   io.Writer
	total int64
	last  time.Time
}

func newTicker(out io.Writer, total int64) *ticker {
	return &ticker{out: out, total: total, last: time.Now()}
}

func (tk *ticker) update(tokens int64, tps, loss float64) {
	if time.Since(tk.last) < heartbeat {
		return
	}
	tk.println(fmt.Sprintf("progress: tokens %s/%s (%.0f%%)  loss %.4f  %.0f tok/s  ETA %s",
		units.Commas(tokens), units.Commas(tk.total), 100*float64(tokens)/float64(tk.total), loss, tps, eta(tk.total-tokens, tps)))
}

func (tk *ticker) println(line string) {
	fmt.Fprintln(tk.out, line)
	tk.last = time.Now()
}

func (tk *ticker) finish() {}

// eta formats the time left to train the remaining tokens at tps tokens/s.
func eta(remaining int64, tps float64) string {
	if remaining <= 0 {
		return "0s"
	}
	if !(tps > 0) {
		return "unknown"
	}
	d := time.Duration(float64(remaining) / tps * float64(time.Second))
	if d > time.Minute {
		return d.Round(time.Second).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

// bar is a live mpb progress bar: tokens done / budget, tokens/s, loss, ETA.
type bar struct {
	mu    sync.Mutex
	p     *mpb.Progress
	b     *mpb.Bar
	out   io.Writer
	tps   float64
	loss  float64
	total int64
	at    int64 // tokens of the last update
	done  bool
}

func newBar(out io.Writer, total, start int64) *bar {
	br := &bar{out: out, total: total}
	br.p = mpb.New(mpb.WithOutput(out), mpb.WithWidth(40), mpb.WithAutoRefresh())
	br.b = br.p.New(total, mpb.BarStyle(),
		mpb.PrependDecorators(
			decor.Name("train "),
			decor.CountersNoUnit("%d/%d tok"),
		),
		mpb.AppendDecorators(
			decor.Any(func(decor.Statistics) string {
				br.mu.Lock()
				defer br.mu.Unlock()
				return fmt.Sprintf(" %6.0f tok/s  loss %.4f ", br.tps, br.loss)
			}),
			decor.Name(" ETA "),
			decor.AverageETA(decor.ET_STYLE_GO),
		),
	)
	br.b.SetCurrent(start)
	br.b.DecoratorAverageAdjust(time.Now())
	return br
}

func (br *bar) update(tokens int64, tps, loss float64) {
	br.mu.Lock()
	br.tps, br.loss = tps, loss
	br.mu.Unlock()
	// A bar that reaches its total completes, and mpb then stops printing
	// the lines written above it: the last step's loss line, written after
	// this update, would be lost. finish completes the bar.
	br.b.SetCurrent(min(tokens, br.total-1))
	br.at = tokens
}

func (br *bar) println(line string) {
	// mpb prints lines above the bar when written through the progress
	// container's writer; a plain Fprintln would tear the bar.
	fmt.Fprintln(br.p, line)
}

func (br *bar) finish() {
	if br.done {
		return
	}
	br.done = true
	br.b.SetCurrent(br.at) // every line is written: now the bar may complete
	br.b.Abort(false)      // stops a bar short of its total (an interrupted run)
	br.p.Wait()
}
