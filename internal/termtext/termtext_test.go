package termtext

import (
	"bytes"
	"testing"
)

func show(parts ...string) string {
	var b bytes.Buffer
	w := New(&b)
	for _, p := range parts {
		w.Write([]byte(p))
	}
	w.Close()
	return b.String()
}

func TestWriter(t *testing.T) {
	é := "\xc3\xa9" // é
	for _, c := range []struct {
		name  string
		parts []string
		want  string
	}{
		{"plain text and newlines, tabs", []string{"And God said\n", "\tunto Moses"}, "And God said\n\tunto Moses"},
		{"a character split across tokens", []string{"caf", é[:1], é[1:], "!"}, "café!"},
		{"a 4-byte character in single bytes", []string{"\xf0", "\x9f", "\x98", "\x80"}, "😀"},
		{"invalid bytes", []string{"a\xdab", "\xff"}, "a\uFFFDb\uFFFD"},
		{"control characters dropped", []string{"x\x02y\x1b[2Jz\r\x7f"}, "xy[2Jz"},
		{"a cut character at the end", []string{"ok", é[:1]}, "ok\uFFFD"},
		{"a lead byte followed by text", []string{é[:1], "b"}, "\uFFFDb"},
	} {
		if got := show(c.parts...); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
