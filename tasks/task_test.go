package tasks

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func parse(t *testing.T, text string) *Task {
	t.Helper()
	tk, err := Parse(strings.NewReader(text), "dir/demo.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func TestParseMultipleChoice(t *testing.T) {
	tk := parse(t, `{"task": "colors", "kind": "multiple_choice", "fewshot": 1, "separator": "\n", "description": "Colours."}
{"context": "Sky:", "choices": [" blue", " red"], "gold": 0}

{"context": "Grass:", "choices": [" green", " pink", " grey"], "gold": 0}
{"context": "Blood:", "choices": [" green", " red"], "gold": 1}
`)
	if tk.Name != "colors" || tk.Kind != MultipleChoice || tk.Fewshot != 1 || tk.Separator != "\n" || len(tk.Examples) != 3 {
		t.Fatalf("parsed %+v", tk)
	}
	if got := tk.Examples[1].Line; got != 4 {
		t.Errorf("second example on line %d, want 4 (blank lines count)", got)
	}
	if got, want := tk.Preamble(), "Colours.\nSky: blue\n"; got != want {
		t.Errorf("preamble %q, want %q", got, want)
	}
	if s := tk.Scored(); len(s) != 2 || s[0].Context != "Grass:" {
		t.Errorf("scored examples %+v", s)
	}
}

// Without a header the name is the file's and the kind the first example's.
func TestParseInferred(t *testing.T) {
	tk := parse(t, `{"prompt": "2+2=", "answers": ["4", "four"]}
{"prompt": "3+3=", "answers": ["6"]}`)
	if tk.Name != "demo" || tk.Kind != Generate || tk.Separator != DefaultSeparator || tk.MaxTokens != DefaultMaxTokens {
		t.Fatalf("parsed %+v", tk)
	}
	tk = parse(t, `{"task": "x", "fewshot": 1, "max_tokens": 5}
{"prompt": "2+2=", "answers": ["4", "four"]}
{"prompt": "3+3=", "answers": ["6"]}`)
	if tk.Kind != Generate || tk.MaxTokens != 5 || tk.Preamble() != "2+2=4\n\n" {
		t.Fatalf("parsed %+v, preamble %q", tk, tk.Preamble())
	}
}

// Every malformed file fails with an *Error naming the file and the line.
func TestParseErrors(t *testing.T) {
	mc := `{"context": "a", "choices": [" b", " c"], "gold": 0}`
	cases := []struct {
		name, text string
		line       int
		msg        string
	}{
		{"not json", mc + "\n{context: 1}", 2, "not a JSON object"},
		{"truncated", `{"context": "a", "choices": [" b"`, 1, "not a JSON object"},
		{"array", `[1, 2]`, 1, "not a JSON object"},
		{"gold out of range", mc + "\n" + `{"context": "a", "choices": [" b", " c"], "gold": 2}`, 2, "gold 2 is outside the 2 choices"},
		{"negative gold", `{"context": "a", "choices": [" b", " c"], "gold": -1}`, 1, "gold -1"},
		{"gold string", `{"context": "a", "choices": [" b", " c"], "gold": "0"}`, 1, `"gold" is a JSON string`},
		{"empty choices", `{"context": "a", "choices": [], "gold": 0}`, 1, "0 choices"},
		{"one choice", `{"context": "a", "choices": [" b"], "gold": 0}`, 1, "1 choices"},
		{"empty choice", `{"context": "a", "choices": [" b", ""], "gold": 0}`, 1, "choice 1 is empty"},
		{"no gold", `{"context": "a", "choices": [" b", " c"]}`, 1, `without "gold"`},
		{"no context", `{"choices": [" b", " c"], "gold": 0}`, 1, `without "context"`},
		{"unknown key", `{"context": "a", "choices": [" b", " c"], "gold": 0, "label": 1}`, 1, `unknown key "label"`},
		{"mixed kinds", mc + "\n\n" + `{"prompt": "p", "answers": ["x"]}`, 3, "a generate example in a multiple_choice task"},
		{"mixed keys", `{"context": "a", "prompt": "p", "answers": ["x"]}`, 1, "mixes"},
		{"kind mismatch", `{"kind": "generate"}` + "\n" + mc, 2, "set by the header"},
		{"bad kind", `{"kind": "mc"}` + "\n" + mc, 1, `kind "mc"`},
		{"late header", mc + "\n" + `{"task": "x"}`, 2, "only allowed on the first line"},
		{"negative fewshot", `{"fewshot": -1}` + "\n" + mc, 1, "fewshot -1"},
		{"bad name", `{"task": "a b"}` + "\n" + mc, 1, "task name"},
		{"no answers", `{"prompt": "p", "answers": []}`, 1, "without answers"},
		{"blank answer", `{"prompt": "p", "answers": ["x", "  "]}`, 1, "answer 1 is blank"},
		{"empty object", `{}`, 1, "empty example"},
		{"two values", mc + " 5", 1, "not a JSON object"},
		{"no examples", `{"task": "x"}` + "\n\n", 0, "no examples"},
		{"fewshot eats all", `{"fewshot": 1}` + "\n" + mc, 0, "leaves no example"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(c.text), "sets/bad.jsonl")
			var te *Error
			if !errors.As(err, &te) {
				t.Fatalf("got %v, want a *tasks.Error", err)
			}
			if te.File != "sets/bad.jsonl" || te.Line != c.line {
				t.Errorf("located at %s:%d, want sets/bad.jsonl:%d (%v)", te.File, te.Line, c.line, err)
			}
			if !strings.Contains(err.Error(), "sets/bad.jsonl") || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q does not name the file or say %q", err, c.msg)
			}
		})
	}
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mc := `{"context": "a", "choices": [" b", " c"], "gold": 0}`
	write("b.jsonl", mc)
	write("a.jsonl", `{"task": "zeta"}`+"\n"+mc)
	write("notes.txt", "not a task")
	ts, err := LoadDir(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || ts[0].Name != "b" || ts[1].Name != "zeta" {
		t.Fatalf("loaded %d tasks", len(ts))
	}
	ts, err = LoadDir(dir, []string{"zeta"})
	if err != nil || len(ts) != 1 || ts[0].Name != "zeta" {
		t.Fatalf("select zeta: %v", err)
	}
	if _, err := LoadDir(dir, []string{"nope"}); !errors.Is(err, ErrNoTask) || !strings.Contains(err.Error(), "b, zeta") {
		t.Errorf("unknown task: %v", err)
	}
	if ts, err := LoadDir(filepath.Join(dir, "missing"), nil); err != nil || len(ts) != 0 {
		t.Errorf("missing dir: %d tasks, %v", len(ts), err)
	}
	write("c.jsonl", `{"task": "b"}`+"\n"+mc)
	if _, err := LoadDir(dir, nil); err == nil || !strings.Contains(err.Error(), "both") {
		t.Errorf("duplicate name: %v", err)
	}
	write("c.jsonl", mc+"\n"+`{"context": "a", "choices": [" b", " c"], "gold": 5}`)
	var te *Error
	if _, err := LoadDir(dir, nil); !errors.As(err, &te) || te.Line != 2 || !strings.HasSuffix(te.File, "c.jsonl") {
		t.Errorf("bad file in the directory: %v", err)
	}
}
