// Package mpitest runs a test binary's own tests under mpirun: the way
// moetrain tests code that needs several processes. A test calls Run, which
// re-executes the test binary with -test.run set to a worker test under
// `mpirun -np N`; the worker test calls Worker to learn whether it is one of
// those ranks.
package mpitest

import (
	"context"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Required reports whether MPI tests must run (MOETRAIN_MPI_TESTS=1, as CI
// sets it): then a missing mpirun fails the test instead of skipping it.
func Required() bool { return os.Getenv("MOETRAIN_MPI_TESTS") == "1" }

// workerEnv marks the processes Run starts.
const workerEnv = "MOETRAIN_MPITEST_WORKER"

// Worker reports whether this process is a rank started by Run for test
// name; worker tests skip otherwise.
func Worker(t testing.TB) bool {
	t.Helper()
	return os.Getenv(workerEnv) == t.Name()
}

// Mpirun returns the path of mpirun, skipping t (or failing it, when
// Required) if there is none.
func Mpirun(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("mpirun")
	if err != nil {
		if Required() {
			t.Fatalf("MOETRAIN_MPI_TESTS=1 but mpirun is not installed: %v", err)
		}
		t.Skip("mpirun not installed (apt-get install openmpi-bin libopenmpi-dev); set MOETRAIN_MPI_TESTS=1 to require it")
	}
	return p
}

// Args returns the mpirun arguments moetrain's tests use on a small shared
// machine: any number of ranks on the available cores, no core binding,
// shared-memory transport without the single-copy mechanism (which needs
// ptrace rights that containers often lack).
func Args(np int) []string {
	return []string{"-np", strconv.Itoa(np), "--oversubscribe", "--bind-to", "none",
		"--mca", "btl_vader_single_copy_mechanism", "none"}
}

// Env returns the environment for mpirun: Open MPI refuses to run as root
// without the two OMPI_ALLOW_* variables (CI runs as root).
func Env(extra ...string) []string {
	env := append(os.Environ(), "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
	return append(env, extra...)
}

// Run runs the test binary's test named worker under `mpirun -np np` with
// extra environment variables, and fails t with the ranks' output if any
// rank fails. It returns the combined output.
func Run(t testing.TB, np int, worker string, extra ...string) string {
	t.Helper()
	mpirun := Mpirun(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	args := append(Args(np), os.Args[0], "-test.run", "^"+worker+"$", "-test.v", "-test.count=1")
	cmd := exec.CommandContext(ctx, mpirun, args...)
	cmd.Env = Env(append(extra, workerEnv+"="+worker)...)
	out, err := cmd.CombinedOutput()
	s := string(out)
	if err != nil || !strings.Contains(s, "--- PASS: "+worker) || strings.Contains(s, "--- FAIL") || strings.Contains(s, "--- SKIP") {
		t.Fatalf("mpirun -np %d %s: %v\n%s", np, worker, err, s)
	}
	return s
}

// Start starts the test binary's test named worker under `mpirun -np np`
// without waiting, in a process group of its own so that Kill reaches
// mpirun and every rank. Its output goes to out.
func Start(t testing.TB, np int, worker string, out io.Writer, extra ...string) *exec.Cmd {
	t.Helper()
	mpirun := Mpirun(t)
	args := append(Args(np), os.Args[0], "-test.run", "^"+worker+"$", "-test.v", "-test.count=1")
	cmd := exec.Command(mpirun, args...)
	cmd.Env = Env(append(extra, workerEnv+"="+worker)...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mpirun: %v", err)
	}
	return cmd
}

// Kill sends SIGKILL to the process group of a command made by Start (the
// launcher and the ranks: no rank gets to finish or clean up) and waits for
// the launcher.
func Kill(cmd *exec.Cmd) {
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()
}
