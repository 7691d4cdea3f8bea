package sweep

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/moetrain/moetrain/checkpoints"
	"github.com/moetrain/moetrain/internal/atomicfile"
)

// DoneFile is the marker a finished run's directory holds.
const DoneFile = "sweep-done.json"

// Status is how far a run has got.
type Status int

const (
	// New: no checkpoint yet.
	New Status = iota
	// Partial: checkpoints exist but the run has not finished (it resumes).
	Partial
	// Done: trained to its budget and marked finished; a sweep skips it.
	Done
)

func (s Status) String() string { return [...]string{"new", "partial", "done"}[s] }

// StatusOf reports the state of a run's directory.
func StatusOf(r Run) (Status, error) {
	if _, err := os.Stat(filepath.Join(r.Dir, DoneFile)); err == nil {
		return Done, nil
	}
	infos, err := checkpoints.List(r.Dir)
	if err != nil {
		return New, err
	}
	if len(infos) > 0 {
		return Partial, nil
	}
	return New, nil
}

// Event is one thing that happened to a run.
type Event struct {
	Run  string
	Kind string // "skip", "start", "done", "incomplete", "failed"
	Err  error
}

// Runner runs a sweep's runs as `moetrain train` subprocesses.
type Runner struct {
	// Exe is the moetrain executable (os.Executable() in the CLI).
	Exe string
	// Parallel is how many runs execute at once (< 1 means 1).
	Parallel int
	// Log receives one line per event (nil discards).
	Log io.Writer
	// Env is added to the subprocesses' environment.
	Env []string
	// OnEvent, when set, is called for every event, from the goroutine
	// that ran the run.
	OnEvent func(Event)
	// StopWait is how long a subprocess may take to save its checkpoint and
	// exit after the sweep is cancelled before it is killed (0: 10 minutes).
	StopWait time.Duration
}

// Args returns the command line (without the executable) that trains run.
func Args(r Run) []string {
	args := []string{"train", r.Base, "--run-dir", r.Dir, "--plain"}
	for _, s := range r.Sets {
		args = append(args, "--set", s)
	}
	return args
}

// Run trains every run that is not done yet, Parallel at a time, in order.
// Cancelling ctx sends SIGTERM to the running trainers, which save a
// checkpoint and exit; Run then returns ctx's error and a later Run resumes.
// A failed or incomplete run does not stop the others; their errors are
// returned together at the end.
func (rn *Runner) Run(ctx context.Context, runs []Run) error {
	par := max(rn.Parallel, 1)
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	sem := make(chan struct{}, par)
	emit := func(e Event) {
		mu.Lock()
		if rn.Log != nil {
			line := fmt.Sprintf("sweep: %-10s %s", e.Kind, e.Run)
			if e.Err != nil {
				line += ": " + e.Err.Error()
			}
			fmt.Fprintln(rn.Log, line)
		}
		if e.Err != nil {
			errs = append(errs, fmt.Errorf("run %s: %w", e.Run, e.Err))
		}
		mu.Unlock()
		if rn.OnEvent != nil {
			rn.OnEvent(e)
		}
	}
	for _, r := range runs {
		st, err := StatusOf(r)
		if err != nil {
			emit(Event{Run: r.Name, Kind: "failed", Err: err})
			continue
		}
		if st == Done {
			emit(Event{Run: r.Name, Kind: "skip"})
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(r Run) {
			defer wg.Done()
			defer func() { <-sem }()
			emit(Event{Run: r.Name, Kind: "start"})
			ev := rn.one(ctx, r)
			emit(ev)
		}(r)
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sweep interrupted (run it again to resume): %w", err)
	}
	return errors.Join(errs...)
}

// one trains one run to completion and marks it done.
func (rn *Runner) one(ctx context.Context, r Run) Event {
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		return Event{Run: r.Name, Kind: "failed", Err: err}
	}
	logf, err := os.OpenFile(filepath.Join(r.Dir, "sweep.log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return Event{Run: r.Name, Kind: "failed", Err: err}
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, rn.Exe, Args(r)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), rn.Env...)
	// On cancellation ask the trainer to checkpoint and exit (train's
	// SIGTERM handling) rather than killing it.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = rn.StopWait
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = 10 * time.Minute
	}
	fmt.Fprintf(logf, "%s sweep: %s %q\n", time.Now().UTC().Format(time.RFC3339), rn.Exe, Args(r))
	runErr := cmd.Run()
	if ctx.Err() != nil {
		return Event{Run: r.Name, Kind: "incomplete"}
	}
	if runErr != nil {
		return Event{Run: r.Name, Kind: "failed", Err: fmt.Errorf("moetrain train: %w (log: %s)", runErr, filepath.Join(r.Dir, "sweep.log"))}
	}
	tokens, err := lastCheckpoint(r.Dir)
	if err != nil {
		return Event{Run: r.Name, Kind: "failed", Err: err}
	}
	if tokens < r.Config.Train.Tokens {
		return Event{Run: r.Name, Kind: "incomplete", Err: fmt.Errorf("stopped at %d of %d tokens; run the sweep again to resume", tokens, r.Config.Train.Tokens)}
	}
	if err := markDone(r, tokens); err != nil {
		return Event{Run: r.Name, Kind: "failed", Err: err}
	}
	return Event{Run: r.Name, Kind: "done"}
}

func lastCheckpoint(dir string) (int64, error) {
	infos, err := checkpoints.List(dir)
	if err != nil {
		return 0, err
	}
	if len(infos) == 0 {
		return 0, nil
	}
	return infos[len(infos)-1].Tokens, nil
}

// markDone writes the marker atomically (internal/atomicfile), so a crash
// never leaves a half-written marker that would skip an unfinished run.
func markDone(r Run, tokens int64) error {
	raw, err := json.MarshalIndent(map[string]any{
		"name": r.Name, "tokens": tokens, "sets": r.Sets, "base": r.Base,
		"finished": time.Now().UTC().Format(time.RFC3339),
	}, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(r.Dir, DoneFile), append(raw, '\n'), 0o644); err != nil {
		return fmt.Errorf("mark done: %w", err)
	}
	return nil
}
