// Package units formats counts and sizes for people: one way to print a
// parameter count, a byte size or a token count everywhere in moetrain.
package units

import (
	"fmt"
	"strconv"
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
