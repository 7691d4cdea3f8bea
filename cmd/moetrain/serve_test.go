package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/moetrain/moetrain/rundir"
)

// chromium returns Debian's chromium, skipping the test outside CI when it
// is missing (CI installs it: .ci/run).
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/chromium", "chromium"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (CI=true: .ci/run installs it)")
	}
	t.Skip("chromium is not installed")
	return ""
}

// dirState is every file under dir with its size and modification time.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		out[p] = fmt.Sprint(info.Size(), info.ModTime().UnixNano())
		return nil
	})
	return out
}

// nonWhite is the share of a PNG's pixels that are not (near) white.
func nonWhite(t *testing.T, raw []byte) float64 {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	b := img.Bounds()
	n := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r < 0xf000 || g < 0xf000 || bl < 0xf000 {
				n++
			}
		}
	}
	return float64(n) / float64(b.Dx()*b.Dy())
}

// The live page in a real browser: `moetrain serve` on a trained run shows
// the run's numbers (read back from the DOM against metrics.jsonl), draws
// its charts (a screenshot that is not blank), picks up a metrics line
// appended while it is open, and writes nothing into the run directory.
func TestServePageInChromium(t *testing.T) {
	browser := chromium(t)
	run := trainedRun(t, 4, "  every_tokens: 0\n", "  every_tokens: 256\n")
	ms, err := rundir.ReadMetrics(filepath.Join(run, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var trainLines []rundir.Metrics
	var heldout []float64
	for _, m := range ms {
		if m.Kind == "train" {
			trainLines = append(trainLines, m)
		}
		if m.Kind == "eval" && m.Task == "heldout" && m.Metric == "loss" {
			heldout = append(heldout, *m.Value)
		}
	}
	if len(trainLines) < 2 || len(heldout) == 0 {
		t.Fatalf("the run has %d train lines and %d held-out evals", len(trainLines), len(heldout))
	}
	before := dirState(t, run)

	srv := exec.Command(binary, "serve", run, "--port", "0")
	stdout, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	srv.Stderr = &stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		srv.Process.Signal(os.Interrupt)
		srv.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("serve printed no address: %v\n%s", err, stderr.String())
	}
	i := strings.Index(line, "http://127.0.0.1:")
	if i < 0 {
		t.Fatalf("serve does not listen on 127.0.0.1: %q", line)
	}
	base := strings.Fields(line[i:])[0]

	// Chromium's helper processes may still write into the profile for a
	// moment after the browser is killed, so the profile is removed with
	// retries rather than by t.TempDir's single RemoveAll (which failed
	// the test once with "directory not empty").
	profile, err := os.MkdirTemp("", "moetrain-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 {
			if err = os.RemoveAll(profile); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("remove the browser profile: %v", err)
	})
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(browser), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(profile), chromedp.WindowSize(1200, 1600),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancel = context.WithTimeout(ctx, 90*time.Second)
	defer cancel()

	// The index: the run's last train and held-out loss, and the compare table.
	var trainAttr, heldAttr, compare string
	if err := chromedp.Run(ctx,
		chromedp.Navigate(base),
		chromedp.AttributeValue(`#runs tr[data-run="run"]`, "data-train-loss", &trainAttr, nil),
		chromedp.AttributeValue(`#runs tr[data-run="run"]`, "data-heldout-loss", &heldAttr, nil),
		chromedp.Text(`#compare`, &compare),
	); err != nil {
		t.Fatalf("index: %v\n%s", err, stderr.String())
	}
	if got, _ := strconv.ParseFloat(trainAttr, 64); got != trainLines[len(trainLines)-1].Loss {
		t.Errorf("index train loss %q, want %v", trainAttr, trainLines[len(trainLines)-1].Loss)
	}
	if got, _ := strconv.ParseFloat(heldAttr, 64); got != heldout[len(heldout)-1] {
		t.Errorf("index held-out loss %q, want %v", heldAttr, heldout[len(heldout)-1])
	}
	if want := strconv.FormatFloat(heldout[len(heldout)-1], 'f', 3, 64); !strings.Contains(compare, want) || !strings.Contains(compare, "DeepSeekMoE 1+3/7") {
		t.Errorf("compare table lacks the held-out loss %s or the variant:\n%s", want, compare)
	}

	// The run page: every chart loaded, the tables hold the metrics.
	readRows := func(sel, attr string) []float64 {
		t.Helper()
		var vals []string
		if err := chromedp.Run(ctx, chromedp.Evaluate(fmt.Sprintf(`Array.from(document.querySelectorAll(%q)).map(e => e.getAttribute(%q))`, sel, attr), &vals)); err != nil {
			t.Fatal(err)
		}
		out := make([]float64, len(vals))
		for i, v := range vals {
			out[i], _ = strconv.ParseFloat(v, 64)
		}
		return out
	}
	chartsLoaded := `["chart-loss", "chart-dynamics", "chart-load"].every(id => { const i = document.getElementById(id); return i && i.complete && i.naturalWidth > 300; })`
	var shot, chart []byte
	if err := chromedp.Run(ctx,
		chromedp.Navigate(base+"/run?r=run"),
		chromedp.Poll(chartsLoaded, nil, chromedp.WithPollingTimeout(30*time.Second)),
		chromedp.FullScreenshot(&shot, 100), // quality 100: PNG,
		chromedp.Screenshot(`#chart-loss`, &chart),
	); err != nil {
		t.Fatalf("run page: %v\n%s", err, stderr.String())
	}
	var wantLoss, wantLR, wantNorm []float64
	for _, m := range trainLines {
		wantLoss, wantLR, wantNorm = append(wantLoss, m.Loss), append(wantLR, m.LR), append(wantNorm, m.GradNorm)
	}
	for _, c := range []struct {
		attr string
		want []float64
	}{{"data-loss", wantLoss}, {"data-lr", wantLR}, {"data-grad-norm", wantNorm}} {
		if got := readRows("#train tr[data-tokens]", c.attr); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("train table %s %v, want %v", c.attr, got, c.want)
		}
	}
	if got := readRows("#heldout tr[data-tokens]", "data-loss"); fmt.Sprint(got) != fmt.Sprint(heldout) {
		t.Errorf("held-out table %v, want %v", got, heldout)
	}
	var load string
	if err := chromedp.Run(ctx, chromedp.AttributeValue(`#load tr[data-layer="0"]`, "data-load", &load, nil)); err != nil {
		t.Fatal(err)
	}
	last := trainLines[len(trainLines)-1].MoE[0].Load
	if got := strings.Fields(load); len(got) != len(last) {
		t.Errorf("load table, layer 0: %q, want %v", load, last)
	} else {
		for e, s := range got {
			if v, _ := strconv.ParseFloat(s, 64); v != last[e] {
				t.Errorf("load table, layer 0 expert %d: %v, want %v", e, v, last[e])
			}
		}
	}
	if f := nonWhite(t, shot); f < 0.05 {
		t.Errorf("the page screenshot is %.1f%% non-white: blank", 100*f)
	}
	if f := nonWhite(t, chart); f < 0.02 {
		t.Errorf("the loss chart is %.1f%% non-white: blank", 100*f)
	}

	// A line appended while the page is open shows up without a reload.
	var src0 string
	chromedp.Run(ctx, chromedp.AttributeValue(`#chart-loss`, "src", &src0, nil))
	next := trainLines[len(trainLines)-1]
	next.Tokens += 128
	next.Step++
	next.Loss = 1.2345
	raw, _ := json.Marshal(next)
	f, err := os.OpenFile(filepath.Join(run, "metrics.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(append(raw, '\n'))
	f.Close()
	appended := dirState(t, run)
	sel := fmt.Sprintf(`#train tr[data-tokens="%d"]`, next.Tokens)
	var gotLoss, src1 string
	if err := chromedp.Run(ctx,
		chromedp.Poll(fmt.Sprintf(`document.querySelector(%q) !== null`, sel), nil, chromedp.WithPollingTimeout(20*time.Second)),
		chromedp.AttributeValue(sel, "data-loss", &gotLoss, nil),
		chromedp.AttributeValue(`#chart-loss`, "src", &src1, nil),
		chromedp.Poll(chartsLoaded, nil, chromedp.WithPollingTimeout(20*time.Second)),
	); err != nil {
		t.Fatalf("the appended line did not show: %v", err)
	}
	if gotLoss != "1.2345" || src1 == src0 {
		t.Errorf("after the append: loss %q (want 1.2345), chart %q (was %q: want it redrawn)", gotLoss, src1, src0)
	}

	// Serving wrote nothing into the run directory.
	after := dirState(t, run)
	if fmt.Sprint(after) != fmt.Sprint(appended) {
		t.Errorf("serve changed the run directory:\n before %v\n after  %v", appended, after)
	}
	delete(appended, filepath.Join(run, "metrics.jsonl"))
	delete(before, filepath.Join(run, "metrics.jsonl"))
	if fmt.Sprint(before) != fmt.Sprint(appended) {
		t.Errorf("the run directory changed while served:\n before %v\n after  %v", before, appended)
	}
}
