package scratch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Tmp is the directory in which this process builds out.
func Tmp(out string) string { return fmt.Sprintf("%s.tmp-%d", filepath.Clean(out), os.Getpid()) }

// Old is where this process moves a replaced out aside.
func Old(out string) string { return fmt.Sprintf("%s.old-%d", filepath.Clean(out), os.Getpid()) }

// Sweep removes the .tmp-<pid> siblings of out whose process no longer
// runs, and resolves their .old-<pid> siblings: put back as out when out is
// missing (the kill came between the two renames), removed otherwise. It
// returns a note for each thing it did.
func Sweep(out string) (notes []string, err error) {
	out = filepath.Clean(out)
	dir, base := filepath.Split(out)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	for _, e := range ents {
		for _, kind := range []string{".tmp-", ".old-"} {
			pid, ok := strings.CutPrefix(e.Name(), base+kind)
			n, err := strconv.Atoi(pid)
			if !ok || err != nil || n <= 0 || alive(n) {
				continue
			}
			p := filepath.Join(dir, e.Name())
			if kind == ".old-" {
				if _, err := os.Lstat(out); errors.Is(err, os.ErrNotExist) {
					if err := os.Rename(p, out); err != nil {
						return notes, fmt.Errorf("restore %s: %w", out, err)
					}
					notes = append(notes, fmt.Sprintf("restored %s from %s, left by an interrupted replacement", out, p))
					continue
				}
			}
			if err := os.RemoveAll(p); err != nil {
				return notes, fmt.Errorf("remove leftover %s: %w", p, err)
			}
			notes = append(notes, fmt.Sprintf("removed %s, left by an interrupted run (process %d)", p, n))
		}
	}
	return notes, nil
}

// alive reports whether process pid exists.
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
