// Package atomicfile writes files that must survive a crash: after a power
// loss or a kill at any instant, the path holds either its old content or
// the complete new content, never a part.
//
// The one recipe: write into a temporary file in the target's directory
// (hidden, so globs such as tasks/*.jsonl never see it), fsync it, rename it
// over the target, then fsync the directory so the rename itself is on disk.
// A rename across directories is not atomic, which is why the temporary file
// lives next to the target.
//
// WriteFile and Write replace one file; SyncDir is the last step for code
// that builds a whole directory and renames it into place (checkpoints, HF
// exports, datasets).
package atomicfile
