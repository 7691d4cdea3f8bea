package train

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// progress shows training progress; log lines print above it.
type progress interface {
	update(tokens int64, tokensPerS, loss float64)
	println(line string)
	finish()
}

// bar is a live mpb progress bar: tokens done / budget, tokens/s, loss, ETA.
type bar struct {
	mu   sync.Mutex
	p    *mpb.Progress
	b    *mpb.Bar
	out  io.Writer
	tps  float64
	loss float64
	done bool
}

func newBar(out io.Writer, total, start int64) *bar {
	br := &bar{out: out}
	br.p = mpb.New(mpb.WithOutput(out), mpb.WithWidth(40))
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
	br.b.SetCurrent(tokens)
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
	br.b.Abort(false)
	br.p.Wait()
}
