// Package units formats counts and sizes for people: one way to print a
// parameter count, a byte size or a token count everywhere in moetrain, and
// one way to read a byte size from a flag (ParseBytes).
package units

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Commas writes n with thousands separators: 16375728128 → "16,375,728,128".
func Commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	out := make([]byte, 0, len(s)+len(s)/3+1)
	if neg {
		out = append(out, '-')
	}
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// Bytes writes a size in binary units: 1536 → "1.5 KiB".
func Bytes(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit || m <= -unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Short writes a count with a K/M/B suffix: 2828650496 → "2.83B".
func Short(n int64) string {
	switch a := n; {
	case a >= 1e9 || a <= -1e9:
		return fmt.Sprintf("%.2fB", float64(n)/1e9)
	case a >= 1e6 || a <= -1e6:
		return fmt.Sprintf("%.2fM", float64(n)/1e6)
	case a >= 1e3 || a <= -1e3:
		return fmt.Sprintf("%.1fK", float64(n)/1e3)
	}
	return strconv.FormatInt(n, 10)
}

// ParseBytes reads a size written for people: a plain byte count, or a
// number with a unit, case-insensitive, with or without a space: KB, MB,
// GB, TB are powers of 1000 (as transformers reads max_shard_size), KiB,
// MiB, GiB, TiB powers of 1024. The size must be positive and fit an int64.
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   float64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"TIB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	mult := 1.0
	up := strings.ToUpper(t)
	for _, u := range units {
		if strings.HasSuffix(up, u.suffix) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || !(v > 0) || v*mult >= math.MaxInt64 || v*mult < 1 {
		return 0, fmt.Errorf("size %q: want a positive byte count such as 2000000, 500MB or 80GiB", s)
	}
	return int64(v * mult), nil
}
