package tasks

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode"
)

// Task kinds.
const (
	MultipleChoice = "multiple_choice"
	Generate       = "generate"
)

// Defaults of the optional header keys.
const (
	DefaultSeparator = "\n\n"
	DefaultMaxTokens = 32
)

// maxLine bounds one JSONL line (a few-shot context is a few KiB; 16 MiB
// means a broken file, not a long example).
const maxLine = 16 << 20

// Task is one parsed and validated task file.
type Task struct {
	Name        string
	Kind        string // MultipleChoice or Generate
	Fewshot     int    // the first Fewshot examples are demonstrations, not scored
	Separator   string // joins the description and the demonstrations to the context
	Description string // prepended to every context when non-empty
	MaxTokens   int    // generate: the most tokens decoded per example
	File        string // where it was read from, for messages
	Examples    []Example
}

// Example is one line of a task file. Multiple-choice examples use Context,
// Choices and Gold; generation examples Prompt and Answers.
type Example struct {
	Line    int // 1-based line in the file
	Context string
	Choices []string
	Gold    int
	Prompt  string
	Answers []string
}

// Error is a problem with a task file, located at a line (0 when it
// concerns the whole file).
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("task file %s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("task file %s: %s", e.File, e.Msg)
}

func errAt(file string, line int, format string, args ...any) error {
	return &Error{File: file, Line: line, Msg: fmt.Sprintf(format, args...)}
}

var (
	headerKeys  = map[string]bool{"task": true, "kind": true, "fewshot": true, "separator": true, "description": true, "max_tokens": true}
	mcKeys      = map[string]bool{"context": true, "choices": true, "gold": true}
	generateKey = map[string]bool{"prompt": true, "answers": true}
)

type rawHeader struct {
	Task        *string `json:"task"`
	Kind        *string `json:"kind"`
	Fewshot     *int    `json:"fewshot"`
	Separator   *string `json:"separator"`
	Description *string `json:"description"`
	MaxTokens   *int    `json:"max_tokens"`
}

type rawExample struct {
	Context *string  `json:"context"`
	Choices []string `json:"choices"`
	Gold    *int     `json:"gold"`
	Prompt  *string  `json:"prompt"`
	Answers []string `json:"answers"`
}

// Load reads and validates the task file at path. Its name is the header's
// "task", or the file's base name without ".jsonl".
func Load(path string) (*Task, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open task file: %w", err)
	}
	defer f.Close()
	return Parse(f, path)
}

// NameOf is the default task name of a file: its base name without ".jsonl".
func NameOf(path string) string {
	return strings.TrimSuffix(filepath.Base(path), ".jsonl")
}

// Parse reads a task file from r; file names it in errors and gives the
// default task name.
func Parse(r io.Reader, file string) (*Task, error) {
	t := &Task{Name: NameOf(file), Separator: DefaultSeparator, File: file}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	line, sawFirst, kindFromHeader := 0, false, false
	for sc.Scan() {
		line++
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(raw, &keys); err != nil {
			return nil, errAt(file, line, "not a JSON object: %v", jsonMsg(err))
		}
		isHeader, isMC, isGen := false, false, false
		for k := range keys {
			switch {
			case headerKeys[k]:
				isHeader = true
			case mcKeys[k]:
				isMC = true
			case generateKey[k]:
				isGen = true
			default:
				return nil, errAt(file, line, "unknown key %q (a header has task, kind, fewshot, separator, description, max_tokens; a multiple-choice example context, choices, gold; a generation example prompt, answers)", k)
			}
		}
		first := !sawFirst
		sawFirst = true
		if isHeader {
			if !first {
				return nil, errAt(file, line, "header keys are only allowed on the first line")
			}
			if isMC || isGen {
				return nil, errAt(file, line, "the header line mixes header keys with example keys")
			}
			var h rawHeader
			if err := strictUnmarshal(raw, &h); err != nil {
				return nil, errAt(file, line, "header: %v", err)
			}
			if err := t.applyHeader(h); err != nil {
				return nil, errAt(file, line, "header: %v", err)
			}
			kindFromHeader = t.Kind != ""
			continue
		}
		switch {
		case isMC && isGen:
			return nil, errAt(file, line, "mixes multiple-choice keys (context, choices, gold) with generation keys (prompt, answers)")
		case !isMC && !isGen:
			return nil, errAt(file, line, "empty example")
		}
		kind := MultipleChoice
		if isGen {
			kind = Generate
		}
		if t.Kind == "" {
			t.Kind = kind
		} else if t.Kind != kind {
			how := "the first example"
			if kindFromHeader {
				how = "the header"
			}
			return nil, errAt(file, line, "a %s example in a %s task (the kind is set by %s)", kind, t.Kind, how)
		}
		var x rawExample
		if err := strictUnmarshal(raw, &x); err != nil {
			return nil, errAt(file, line, "%v", err)
		}
		ex, err := toExample(x, kind)
		if err != nil {
			return nil, errAt(file, line, "%v", err)
		}
		ex.Line = line
		t.Examples = append(t.Examples, ex)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, errAt(file, line+1, "line longer than %d bytes", maxLine)
		}
		return nil, fmt.Errorf("read task file %s: %w", file, err)
	}
	if len(t.Examples) == 0 {
		return nil, errAt(file, 0, "no examples")
	}
	if t.Fewshot >= len(t.Examples) {
		return nil, errAt(file, 0, "fewshot %d leaves no example to score (%d examples)", t.Fewshot, len(t.Examples))
	}
	if t.MaxTokens == 0 {
		t.MaxTokens = DefaultMaxTokens
	}
	return t, nil
}

func (t *Task) applyHeader(h rawHeader) error {
	if h.Task != nil {
		if err := checkName(*h.Task); err != nil {
			return err
		}
		t.Name = *h.Task
	}
	if h.Kind != nil {
		if *h.Kind != MultipleChoice && *h.Kind != Generate {
			return fmt.Errorf("kind %q: want %q or %q", *h.Kind, MultipleChoice, Generate)
		}
		t.Kind = *h.Kind
	}
	if h.Fewshot != nil {
		if *h.Fewshot < 0 {
			return fmt.Errorf("fewshot %d: want >= 0", *h.Fewshot)
		}
		t.Fewshot = *h.Fewshot
	}
	if h.Separator != nil {
		t.Separator = *h.Separator
	}
	if h.Description != nil {
		t.Description = *h.Description
	}
	if h.MaxTokens != nil {
		if *h.MaxTokens < 1 {
			return fmt.Errorf("max_tokens %d: want >= 1", *h.MaxTokens)
		}
		t.MaxTokens = *h.MaxTokens
	}
	return nil
}

// checkName accepts names that read well in tables and metrics lines.
func checkName(s string) error {
	if s == "" {
		return errors.New("task name is empty")
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == ',' {
			return fmt.Errorf("task name %q: no spaces, control characters or commas", s)
		}
	}
	return nil
}

func toExample(x rawExample, kind string) (Example, error) {
	if kind == MultipleChoice {
		switch {
		case x.Context == nil:
			return Example{}, errors.New(`multiple-choice example without "context"`)
		case x.Choices == nil:
			return Example{}, errors.New(`multiple-choice example without "choices"`)
		case len(x.Choices) < 2:
			return Example{}, fmt.Errorf("%d choices: want at least 2", len(x.Choices))
		case x.Gold == nil:
			return Example{}, errors.New(`multiple-choice example without "gold"`)
		case *x.Gold < 0 || *x.Gold >= len(x.Choices):
			return Example{}, fmt.Errorf("gold %d is outside the %d choices (0-based)", *x.Gold, len(x.Choices))
		}
		for i, c := range x.Choices {
			if c == "" {
				return Example{}, fmt.Errorf("choice %d is empty", i)
			}
		}
		return Example{Context: *x.Context, Choices: x.Choices, Gold: *x.Gold}, nil
	}
	switch {
	case x.Prompt == nil:
		return Example{}, errors.New(`generation example without "prompt"`)
	case len(x.Answers) == 0:
		return Example{}, errors.New(`generation example without answers ("answers" is missing or empty)`)
	}
	for i, a := range x.Answers {
		if strings.TrimSpace(a) == "" {
			return Example{}, fmt.Errorf("answer %d is blank", i)
		}
		if strings.Contains(strings.TrimSpace(a), "\n") {
			return Example{}, fmt.Errorf("answer %d holds a newline, but decoding stops at the first newline", i)
		}
	}
	return Example{Prompt: *x.Prompt, Answers: x.Answers}, nil
}

// strictUnmarshal decodes one JSON object with exact types and nothing after it.
func strictUnmarshal(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New(jsonMsg(err))
	}
	if dec.More() {
		return errors.New("more than one JSON value on the line")
	}
	return nil
}

// jsonMsg rewords encoding/json's type errors by key.
func jsonMsg(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Sprintf("%q is a JSON %s, want %s", te.Field, te.Value, jsonType(te.Type.Kind().String()))
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func jsonType(k string) string {
	switch k {
	case "int":
		return "an integer"
	case "string", "ptr":
		return "a string"
	case "slice":
		return "a list of strings"
	}
	return k
}

// Demonstrations are the few-shot examples (the first Fewshot).
func (t *Task) Demonstrations() []Example { return t.Examples[:t.Fewshot] }

// Scored are the examples that are scored (all but the demonstrations).
func (t *Task) Scored() []Example { return t.Examples[t.Fewshot:] }

// Preamble is the text put before every scored example's context or prompt:
// the description, then each demonstration with its gold choice or first
// answer, each followed by the separator.
func (t *Task) Preamble() string {
	var b strings.Builder
	if t.Description != "" {
		b.WriteString(t.Description)
		b.WriteString(t.Separator)
	}
	for _, d := range t.Demonstrations() {
		if t.Kind == MultipleChoice {
			b.WriteString(d.Context + d.Choices[d.Gold])
		} else {
			b.WriteString(d.Prompt + d.Answers[0])
		}
		b.WriteString(t.Separator)
	}
	return b.String()
}

// Dir lists the task files (*.jsonl) of dir, sorted by name. A missing
// directory has no tasks.
func Dir(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list task files: %w", err)
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".jsonl") {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out, nil
}

// LoadDir loads the task files of dir (a dataset's tasks/ directory). With
// names, only those tasks are loaded, in that order, and a name that no file
// provides is an error; without, every task is, sorted by name. Two files
// giving the same task name are an error.
func LoadDir(dir string, names []string) ([]*Task, error) {
	files, err := Dir(dir)
	if err != nil {
		return nil, err
	}
	byName := map[string]*Task{}
	var all []string
	for _, f := range files {
		t, err := Load(f)
		if err != nil {
			return nil, err
		}
		if prev, ok := byName[t.Name]; ok {
			return nil, fmt.Errorf("task %q is in both %s and %s", t.Name, prev.File, t.File)
		}
		byName[t.Name] = t
		all = append(all, t.Name)
	}
	sort.Strings(all)
	if len(names) == 0 {
		names = all
	}
	var out []*Task
	seen := map[string]bool{}
	for _, n := range names {
		t, ok := byName[n]
		if !ok {
			have := strings.Join(all, ", ")
			if have == "" {
				have = "none"
			}
			return nil, fmt.Errorf("%w: %q in %s (found: %s)", ErrNoTask, n, dir, have)
		}
		if seen[n] {
			continue
		}
		seen[n] = true
		out = append(out, t)
	}
	return out, nil
}

// ErrNoTask is wrapped when a requested task is not found.
var ErrNoTask = errors.New("no such task")
