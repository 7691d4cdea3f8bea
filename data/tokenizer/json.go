package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/moetrain/moetrain/internal/atomicfile"
)

// Marshal returns the tokenizer as a Hugging Face tokenizer.json: model BPE
// with vocab (in id order) and merges (in rank order, "left right" strings)
// spelled in the byte-level alphabet, pre_tokenizer and decoder ByteLevel
// (add_prefix_space false), specials in added_tokens and in the vocab. The
// layout is fixed, so equal tokenizers give identical bytes.
func (t *Tokenizer) Marshal() ([]byte, error) {
	spell := make([]string, len(t.tokens))
	for id, tok := range t.tokens {
		if t.isAdded[id] {
			spell[id] = string(tok)
		} else {
			spell[id] = byteLevelString(tok)
		}
	}
	var b bytes.Buffer
	b.WriteString("{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [")
	added := slices.Clone(t.added)
	slices.SortFunc(added, func(x, y addedToken) int { return x.id - y.id })
	for i, a := range added {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "\n    {\n      \"id\": %d,\n      \"content\": ", a.id)
		writeJSONString(&b, a.content)
		fmt.Fprintf(&b, ",\n      \"single_word\": false,\n      \"lstrip\": false,\n      \"rstrip\": false,\n      \"normalized\": false,\n      \"special\": %t\n    }", a.special)
	}
	if len(added) > 0 {
		b.WriteString("\n  ")
	}
	b.WriteString("],\n  \"normalizer\": null,\n")
	const byteLevel = "{\n    \"type\": \"ByteLevel\",\n    \"add_prefix_space\": false,\n    \"trim_offsets\": true,\n    \"use_regex\": true\n  }"
	b.WriteString("  \"pre_tokenizer\": " + byteLevel + ",\n")
	b.WriteString("  \"post_processor\": null,\n")
	b.WriteString("  \"decoder\": " + byteLevel + ",\n")
	b.WriteString("  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n" +
		"    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n    \"fuse_unk\": false,\n" +
		"    \"byte_fallback\": false,\n    \"ignore_merges\": false,\n    \"vocab\": {")
	seen := make(map[string]int, len(spell))
	for id, s := range spell {
		if prev, dup := seen[s]; dup {
			return nil, fmt.Errorf("tokens %d and %d are both spelled %q", prev, id, s)
		}
		seen[s] = id
		if id > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n      ")
		writeJSONString(&b, s)
		b.WriteString(": ")
		b.WriteString(strconv.Itoa(id))
	}
	b.WriteString("\n    },\n    \"merges\": [")
	for i, m := range t.merges {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n      ")
		writeJSONString(&b, spell[m.left]+" "+spell[m.right])
	}
	if len(t.merges) > 0 {
		b.WriteString("\n    ")
	}
	b.WriteString("]\n  }\n}\n")
	return b.Bytes(), nil
}

// writeJSONString writes s as a JSON string literal without HTML escaping
// (encoding/json would turn "<|endoftext|>" into "\u003c|endoftext|\u003e").
func writeJSONString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}

// Save writes Marshal() to path atomically and durably (internal/atomicfile).
func (t *Tokenizer) Save(path string) error {
	data, err := t.Marshal()
	if err != nil {
		return fmt.Errorf("save tokenizer %s: %w", path, err)
	}
	if err := atomicfile.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("save tokenizer: %w", err)
	}
	return nil
}

// Load reads a tokenizer.json written by Save, or another byte-level BPE
// tokenizer.json within the limits Parse states.
func Load(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer: %w", err)
	}
	t, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer %s: %w", path, err)
	}
	return t, nil
}

type fileJSON struct {
	AddedTokens  []addedJSON     `json:"added_tokens"`
	Normalizer   json.RawMessage `json:"normalizer"`
	PreTokenizer json.RawMessage `json:"pre_tokenizer"`
	Model        *modelJSON      `json:"model"`
}

type addedJSON struct {
	ID      *int   `json:"id"`
	Content string `json:"content"`
	Special bool   `json:"special"`
	Lstrip  bool   `json:"lstrip"`
	Rstrip  bool   `json:"rstrip"`
	Single  bool   `json:"single_word"`
}

type modelJSON struct {
	Type                    string            `json:"type"`
	Dropout                 *float64          `json:"dropout"`
	ContinuingSubwordPrefix *string           `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string           `json:"end_of_word_suffix"`
	IgnoreMerges            bool              `json:"ignore_merges"`
	Vocab                   map[string]int    `json:"vocab"`
	Merges                  []json.RawMessage `json:"merges"`
}

type preTokJSON struct {
	Type           string `json:"type"`
	AddPrefixSpace bool   `json:"add_prefix_space"`
	UseRegex       *bool  `json:"use_regex"`
}

func isNull(m json.RawMessage) bool {
	s := strings.TrimSpace(string(m))
	return s == "" || s == "null"
}

// Parse reads a tokenizer.json. Besides our own files it accepts byte-level
// BPE files such as GPT-2's, provided: model BPE without dropout, subword
// prefix/suffix or ignore_merges; no normalizer; pre_tokenizer ByteLevel
// with add_prefix_space false and use_regex true; every id in 0..n-1 used
// once; all 256 byte tokens present; and an "<|endoftext|>" added token.
// Merges follow sugarme's reading: a merge naming an unknown token is
// skipped (it takes no rank), one whose result is unknown is an error.
func Parse(data []byte) (*Tokenizer, error) {
	var f fileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("parse tokenizer.json: %w", err)
	}
	m := f.Model
	if m == nil {
		return nil, errors.New("parse tokenizer.json: no model")
	}
	if m.Type != "" && m.Type != "BPE" {
		return nil, fmt.Errorf("parse tokenizer.json: model type %q, want BPE", m.Type)
	}
	if m.Dropout != nil {
		return nil, errors.New("parse tokenizer.json: BPE dropout is not supported")
	}
	if (m.ContinuingSubwordPrefix != nil && *m.ContinuingSubwordPrefix != "") ||
		(m.EndOfWordSuffix != nil && *m.EndOfWordSuffix != "") {
		return nil, errors.New("parse tokenizer.json: subword prefix/suffix is not supported")
	}
	if m.IgnoreMerges {
		return nil, errors.New("parse tokenizer.json: ignore_merges is not supported")
	}
	if !isNull(f.Normalizer) {
		return nil, errors.New("parse tokenizer.json: normalizers are not supported")
	}
	if isNull(f.PreTokenizer) {
		return nil, errors.New("parse tokenizer.json: no pre_tokenizer, want ByteLevel")
	}
	var pt preTokJSON
	if err := json.Unmarshal(f.PreTokenizer, &pt); err != nil {
		return nil, fmt.Errorf("parse tokenizer.json: pre_tokenizer: %w", err)
	}
	if pt.Type != "ByteLevel" || pt.AddPrefixSpace || (pt.UseRegex != nil && !*pt.UseRegex) {
		return nil, fmt.Errorf("parse tokenizer.json: pre_tokenizer %s, want ByteLevel with add_prefix_space false and use_regex true", strings.TrimSpace(string(f.PreTokenizer)))
	}
	if len(m.Vocab) == 0 {
		return nil, errors.New("parse tokenizer.json: empty vocab")
	}

	// Ids: the vocab plus added tokens that are not in it.
	spellOf := make(map[int]string, len(m.Vocab)+len(f.AddedTokens))
	idOf := make(map[string]int, len(m.Vocab)+len(f.AddedTokens))
	for s, id := range m.Vocab {
		if id < 0 || id >= MaxVocab {
			return nil, fmt.Errorf("parse tokenizer.json: token %q has id %d out of range", s, id)
		}
		if prev, dup := spellOf[id]; dup {
			return nil, fmt.Errorf("parse tokenizer.json: tokens %q and %q share id %d", prev, s, id)
		}
		spellOf[id] = s
		idOf[s] = id
	}
	var added []addedToken
	addedSet := make(map[string]bool)
	for _, a := range f.AddedTokens {
		if a.Content == "" {
			return nil, errors.New("parse tokenizer.json: empty added token")
		}
		if a.Lstrip || a.Rstrip || a.Single {
			return nil, fmt.Errorf("parse tokenizer.json: added token %q: lstrip, rstrip and single_word are not supported", a.Content)
		}
		if addedSet[a.Content] {
			return nil, fmt.Errorf("parse tokenizer.json: added token %q listed twice", a.Content)
		}
		if a.ID == nil {
			return nil, fmt.Errorf("parse tokenizer.json: added token %q has no id", a.Content)
		}
		id := *a.ID
		if id < 0 || id >= MaxVocab {
			return nil, fmt.Errorf("parse tokenizer.json: added token %q has id %d out of range", a.Content, id)
		}
		if vid, ok := m.Vocab[a.Content]; ok && vid != id {
			return nil, fmt.Errorf("parse tokenizer.json: added token %q has id %d, but %d in the vocab", a.Content, id, vid)
		}
		if s, ok := spellOf[id]; ok && s != a.Content {
			return nil, fmt.Errorf("parse tokenizer.json: added token %q has the id %d of %q", a.Content, id, s)
		}
		spellOf[id] = a.Content
		idOf[a.Content] = id
		addedSet[a.Content] = true
		added = append(added, addedToken{content: a.Content, id: id, special: a.Special})
	}
	slices.SortFunc(added, func(x, y addedToken) int { return x.id - y.id })
	n := len(spellOf)
	tokens := make([][]byte, n)
	for id, s := range spellOf {
		if id >= n {
			return nil, fmt.Errorf("parse tokenizer.json: ids are not 0..%d (found %d)", n-1, id)
		}
		if addedSet[s] {
			tokens[id] = []byte(s)
			continue
		}
		raw, ok := byteLevelBytes(s)
		if !ok || len(raw) == 0 {
			return nil, fmt.Errorf("parse tokenizer.json: token %q is not in the byte-level alphabet", s)
		}
		tokens[id] = raw
	}

	merges := make([]mergeRule, 0, len(m.Merges))
	for i, raw := range m.Merges {
		left, right, err := parseMerge(raw)
		if err != nil {
			return nil, fmt.Errorf("parse tokenizer.json: merge %d: %w", i, err)
		}
		l, okL := idOf[left]
		r, okR := idOf[right]
		if !okL || !okR {
			continue
		}
		res, ok := idOf[left+right]
		if !ok {
			return nil, fmt.Errorf("parse tokenizer.json: merge %d: result %q not in vocab", i, left+right)
		}
		merges = append(merges, mergeRule{left: int32(l), right: int32(r), result: int32(res)})
	}
	t, err := newTokenizer(tokens, added, merges)
	if err != nil {
		return nil, fmt.Errorf("parse tokenizer.json: %w", err)
	}
	return t, nil
}

// parseMerge accepts both merge spellings: "left right" and ["left", "right"].
func parseMerge(raw json.RawMessage) (left, right string, err error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		parts := strings.Split(s, " ")
		if len(parts) != 2 {
			return "", "", fmt.Errorf("%q is not two space-separated tokens", s)
		}
		return parts[0], parts[1], nil
	}
	var pair []string
	if err := json.Unmarshal(raw, &pair); err != nil || len(pair) != 2 {
		return "", "", fmt.Errorf("%s is neither \"a b\" nor [\"a\", \"b\"]", raw)
	}
	return pair[0], pair[1], nil
}
