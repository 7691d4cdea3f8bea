// Package runlock gives one process at a time the right to write a run
// directory. The lock is an advisory flock(2) on RUN/lock, so the kernel
// releases it when its holder exits in any way, kill -9 included: a stale
// lock file never blocks a resume. The holder writes its process id into the
// file, so that a second trainer can say who holds the run.
//
// Only writers lock. Readers (eval, generate, export) take no lock and never
// wait for one; the checkpoints package makes their reads safe against the
// writer's saves and prunes.
package runlock
