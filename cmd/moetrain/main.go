// Command moetrain trains, evaluates and compares DeepSeekMoE language models
// and their baselines from YAML configs. Each subcommand lives in its own file
// and only parses flags before calling into the packages.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/moetrain/moetrain/dist"
	"github.com/moetrain/moetrain/rundir"
)

// usageError marks a mistake in the command line or config: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef returns a usage error (exit code 2).
func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// asUsage marks err (e.g. a config validation error) as a usage error.
func asUsage(err error) error {
	if err == nil {
		return nil
	}
	return usageError{err}
}

var rootCmd = &cobra.Command{
	Use:           "moetrain",
	Short:         "Train and compare DeepSeekMoE language models and their baselines",
	SilenceUsage:  true,
	SilenceErrors: true,
	Args:          cobra.ArbitraryArgs,
	RunE:          groupRun,
}

// groupRun runs a command that only groups subcommands (moetrain, data,
// tasks): without arguments it prints the command's help; with one that
// names no subcommand it fails with a usage error (exit 2). Left to
// cobra, the root's error was a run-time failure (exit 1) and a group's
// stray argument printed the help and exited 0, as if the mistyped
// command had run.
func groupRun(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2 // cobra's own default
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += fmt.Sprintf(" (did you mean %s?)", strings.Join(s, " or "))
	}
	return usagef("%s", msg)
}

func init() {
	rootCmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
}

// exitCode maps an error to moetrain's exit codes: 0 ok, 2 usage or config
// mistakes, 1 run-time failures.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

func main() {
	cmd, err := rootCmd.ExecuteC()
	if err != nil {
		fmt.Fprintf(os.Stderr, "moetrain: %v\n", err)
		if exitCode(err) == 2 && cmd != nil {
			fmt.Fprintf(os.Stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
	}
	// Under mpirun every rank must shut MPI down before exiting (a no-op
	// without MPI).
	if ferr := dist.Finalize(); ferr != nil && err == nil {
		fmt.Fprintf(os.Stderr, "moetrain: %v\n", ferr)
		err = ferr
	}
	os.Exit(exitCode(err))
}

// argsUsage wraps a cobra positional-argument validator so that its errors
// are usage errors (exit code 2).
func argsUsage(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error { return asUsage(v(cmd, args)) }
}

// loadModel is rundir.LoadModel for the commands that read a trained model:
// a path that holds no checkpoint is a usage mistake (exit 2), a damaged
// one a run-time failure (exit 1).
func loadModel(path string) (*rundir.Loaded, error) {
	l, err := rundir.LoadModel(path)
	if errors.Is(err, rundir.ErrNoCheckpoint) {
		return nil, asUsage(err)
	}
	return l, err
}
