package data

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// Report is what Inspect finds in a dataset directory.
type Report struct {
	Dir      string
	Manifest *Manifest
	// Sample is the decoded start of the first train shard.
	Sample string
	// Used is the number of vocabulary ids that occur at least once.
	Used int
	// Top lists the most frequent ids.
	Top []TokenCount
	// Shortest/Longest documents in tokens (EOS included), over all splits.
	ShortestDoc, LongestDoc int64
}

// TokenCount is one id's frequency over all shards.
type TokenCount struct {
	ID    int
	Text  string // decoded, as a Go-quoted string
	Count int64
}

// Inspect verifies every shard of dir (checksum, schema, token range),
// counts how often each id occurs, and decodes a sample of sampleTokens
// tokens with the dataset's tokenizer.
func Inspect(dir string, sampleTokens int) (*Report, error) {
	man, err := LoadManifest(dir)
	if err != nil {
		return nil, err
	}
	tok, err := LoadTokenizer(dir, man)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", dir, err)
	}
	rep := &Report{Dir: dir, Manifest: man, ShortestDoc: -1}
	counts := make([]int64, man.Tokenizer.VocabSize)
	var sample []int
	docLen := int64(0)
	for _, info := range man.Shards {
		f, r, err := openVerifiedShard(dir, man, info)
		if err == nil {
			for i := 0; i < r.nrec && err == nil; i++ {
				var rec []int32
				if rec, err = r.record(i); err != nil {
					break
				}
				for _, id := range rec {
					counts[id]++
					docLen++
					if int(id) == man.Tokenizer.EOS {
						rep.ShortestDoc = minPos(rep.ShortestDoc, docLen)
						rep.LongestDoc = max(rep.LongestDoc, docLen)
						docLen = 0
					}
					if info.Split == Train && len(sample) < sampleTokens {
						sample = append(sample, int(id))
					}
				}
			}
		}
		if r != nil {
			r.close()
		}
		if f != nil {
			f.Close()
		}
		if err != nil {
			return nil, fmt.Errorf("inspect %s: %w", dir, err)
		}
	}
	rep.Sample = tok.Decode(sample)
	ids := make([]int, 0, len(counts))
	for id, c := range counts {
		if c > 0 {
			rep.Used++
			ids = append(ids, id)
		}
	}
	sort.SliceStable(ids, func(a, b int) bool { return counts[ids[a]] > counts[ids[b]] })
	for _, id := range ids[:min(10, len(ids))] {
		rep.Top = append(rep.Top, TokenCount{ID: id, Text: fmt.Sprintf("%q", tok.TokenBytes(id)), Count: counts[id]})
	}
	return rep, nil
}

func minPos(a, b int64) int64 {
	if a < 0 || b < a {
		return b
	}
	return a
}

// Format writes the report for people.
func (r *Report) Format(w io.Writer) error {
	m := r.Manifest
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "dataset\t%s (id %s)\n", r.Dir, m.ID())
	t := m.Tokenizer
	how := "given with --tokenizer"
	if t.Trained {
		how = fmt.Sprintf("trained on a %s sample", byteSize(t.TrainBytes))
	}
	fmt.Fprintf(tw, "tokenizer\t%s: %d ids, EOS %d, hash %s, %s\n", t.File, t.VocabSize, t.EOS, t.Hash, how)
	fmt.Fprintf(tw, "shards\t%d Arrow IPC files, %s tokens, %d tokens per record batch\n", len(m.Shards), m.TokenType, m.RecordTokens)
	fmt.Fprintf(tw, "validation\t%.3g of each domain's documents, seed %d\n", m.ValFraction, m.Seed)
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "split\tdomain\tdocuments\ttokens\tshare\t")
	for _, split := range []string{Train, Validation} {
		si := m.Splits[split]
		for _, d := range m.Domains {
			c := si.Domains[d]
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.1f%%\t\n", split, d, c.Documents, c.Tokens, pct(c.Tokens, si.Tokens))
		}
		fmt.Fprintf(tw, "%s\t(all)\t%d\t%d\t\t\n", split, si.Documents, si.Tokens)
	}
	tw.Flush()
	fmt.Fprintf(w, "\ndocuments: %d to %d tokens (EOS included)\n", r.ShortestDoc, r.LongestDoc)
	fmt.Fprintf(w, "vocabulary coverage: %d of %d ids occur (%.1f%%); %d never occur\n", r.Used, t.VocabSize, pct(int64(r.Used), int64(t.VocabSize)), t.VocabSize-r.Used)
	fmt.Fprintln(w, "most frequent tokens:")
	for _, c := range r.Top {
		fmt.Fprintf(w, "  %6d  %-16s %d\n", c.ID, c.Text, c.Count)
	}
	fmt.Fprintf(w, "\ndecoded sample (start of the train stream):\n%s\n", indent(r.Sample))
	return nil
}

func pct(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

func indent(s string) string {
	return "  | " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  | ")
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
