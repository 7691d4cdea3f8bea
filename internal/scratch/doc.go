// Package scratch names the temporary directories in which prepare and
// export build their output before renaming it into place, after the
// process that owns them: <out>.tmp-<pid> while building, <out>.old-<pid>
// for a replaced output until its successor is in place. A process killed
// in between leaves them behind; Sweep, run by the next process writing the
// same output, tells such leftovers (their owner is gone) from another live
// process's and cleans them up.
package scratch
