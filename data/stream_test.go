package data

import (
	"context"
	"errors"
	"io"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestRoundTrip: prepare → stream → decode gives back the documents' text.
func TestRoundTrip(t *testing.T) {
	dir, man := fixture(t)
	tok := loadTok(t, dir)
	docs := syntheticDocs()
	const T = 16
	for _, split := range []string{Validation, Train} {
		s := openT(t, StreamConfig{Dir: dir, Split: split, SeqLen: T, Batch: 3, Epochs: 1}, Cursor{})
		var stream []int
		if split == Train {
			// Train windows are shuffled: put them back in order by position.
			idle, err := open(StreamConfig{Dir: dir, Split: split, SeqLen: T, Batch: 3}, Cursor{})
			if err != nil {
				t.Fatal(err)
			}
			defer idle.Close()
			rows := make([][]int32, idle.EpochLen())
			sc := idle.scheduler()
			for pos := int64(0); pos < s.EpochLen(); pos++ {
				u, w := sc.locate(Cursor{Position: pos})
				rows[w] = make([]int32, T+1)
				if err := idle.units[u].read(w*T, rows[w]); err != nil {
					t.Fatal(err)
				}
			}
			for i, r := range rows {
				if r == nil {
					t.Fatalf("train window %d never visited in one epoch", i)
				}
			}
			// And the shuffled stream delivers exactly these rows.
			var got, want []string
			for _, b := range collect(t, s, 1<<20) {
				for r := 0; r < b.B; r++ {
					got = append(got, fmtRow(b.Tokens[r*(T+1):(r+1)*(T+1)]))
				}
			}
			for _, r := range rows {
				want = append(want, fmtRow(r))
			}
			slices.Sort(got)
			slices.Sort(want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("one train epoch delivered %d rows that are not the %d windows", len(got), len(want))
			}
			for i, r := range rows {
				stream = appendWindow(stream, r, i)
			}
		} else {
			i := 0
			for _, b := range collect(t, s, 1<<20) {
				for r := 0; r < b.B; r++ {
					stream = appendWindow(stream, b.Tokens[r*(T+1):(r+1)*(T+1)], i)
					i++
				}
			}
		}
		// Split at EOS; every complete document must be one of the inputs,
		// in input order within its domain (the stream is domain by domain).
		eos := man.Tokenizer.EOS
		var got []string
		start := 0
		for i, id := range stream {
			if id == eos {
				got = append(got, tok.Decode(stream[start:i]))
				start = i + 1
			}
		}
		if len(got) < 2 {
			t.Fatalf("%s: only %d complete documents in the stream", split, len(got))
		}
		last := map[string]int{"prose": -1, "code": -1}
		for k, g := range got {
			j := slices.IndexFunc(docs, func(d textDoc) bool { return d.Text == g })
			for j >= 0 && j <= last[docs[j].Domain] {
				n := slices.IndexFunc(docs[j+1:], func(d textDoc) bool { return d.Text == g })
				if n < 0 {
					j = -1
					break
				}
				j += 1 + n
			}
			if j < 0 {
				t.Fatalf("%s: decoded document %d is not an input document (or out of order):\n%q", split, k, g)
			}
			last[docs[j].Domain] = j
		}
		want := man.Splits[split].Documents
		// The tail after the last full window may cut at most one document.
		if int64(len(got)) < want-1 {
			t.Errorf("%s: recovered %d documents, manifest has %d", split, len(got), want)
		}
	}
}

func appendWindow(stream []int, w []int32, i int) []int {
	if i > 0 {
		w = w[1:] // windows overlap by one token
	}
	for _, id := range w {
		stream = append(stream, int(id))
	}
	return stream
}

func fmtRow(r []int32) string {
	var b strings.Builder
	for _, v := range r {
		b.WriteString(string(rune(v + 1)))
	}
	return b.String()
}

func TestSeedsAndDeterminism(t *testing.T) {
	dir, _ := fixture(t)
	cfg := StreamConfig{Dir: dir, SeqLen: 8, Batch: 4, Seed: 1}
	a := collect(t, openT(t, cfg, Cursor{}), 5)
	b := collect(t, openT(t, cfg, Cursor{}), 5)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed gave different batches")
	}
	cfg.Seed = 2
	c := collect(t, openT(t, cfg, Cursor{}), 5)
	if reflect.DeepEqual(a[0].Tokens, c[0].Tokens) {
		t.Fatal("seeds 1 and 2 gave the same first batch")
	}
	for _, bt := range a {
		if bt.B != 4 || bt.T != 8 || len(bt.Tokens) != 4*9 {
			t.Fatalf("batch shape B=%d T=%d len=%d, want 4, 8, 36", bt.B, bt.T, len(bt.Tokens))
		}
	}
}

// TestResume: stopping anywhere and reopening at the saved cursor gives the
// uninterrupted stream, across epoch boundaries, natural and weighted.
func TestResume(t *testing.T) {
	dir, _ := fixture(t)
	for _, w := range []map[string]float64{nil, {"prose": 3, "code": 1}} {
		cfg := StreamConfig{Dir: dir, SeqLen: 32, Batch: 7, Seed: 3, Weights: w}
		s := openT(t, cfg, Cursor{})
		epochBatches := int(s.EpochLen()/7) + 1
		n := 3*epochBatches + 2
		full := collect(t, s, n)
		if len(full) != n || full[n-1].Cursor.Epoch < 2 {
			t.Fatalf("weights %v: got %d batches ending at %+v, want %d crossing two epochs", w, len(full), full[len(full)-1].Cursor, n)
		}
		for _, k := range []int{1, epochBatches - 1, epochBatches, epochBatches + 1, n - 3} {
			r := collect(t, openT(t, cfg, full[k-1].Cursor), n-k)
			if !reflect.DeepEqual(r, full[k:]) {
				t.Fatalf("weights %v: resuming after batch %d at %+v differs from the uninterrupted stream", w, k, full[k-1].Cursor)
			}
		}
		// Epochs shuffle differently.
		e0 := collect(t, openT(t, cfg, Cursor{}), 1)[0]
		e1 := collect(t, openT(t, cfg, Cursor{Epoch: 1}), 1)[0]
		if reflect.DeepEqual(e0.Tokens, e1.Tokens) {
			t.Fatalf("weights %v: epochs 0 and 1 start with the same batch", w)
		}
	}
}

func TestEpochLimit(t *testing.T) {
	dir, _ := fixture(t)
	s := openT(t, StreamConfig{Dir: dir, Split: Validation, SeqLen: 8, Batch: 5, Epochs: 2}, Cursor{})
	var rows int64
	for {
		b, err := s.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		rows += int64(b.B)
	}
	if rows != 2*s.EpochLen() {
		t.Fatalf("two epochs gave %d rows, want %d", rows, 2*s.EpochLen())
	}
	if _, err := s.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("Next after the end: %v, want io.EOF", err)
	}
}

// TestWeights: each block of 4096 examples holds exactly the apportioned
// count per domain, and rows come from their domain's shards.
func TestWeights(t *testing.T) {
	dir, _ := fixture(t)
	s, err := open(StreamConfig{Dir: dir, SeqLen: 16, Batch: 1, Seed: 5, Weights: map[string]float64{"prose": 1, "code": 3}}, Cursor{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := s.slots; !reflect.DeepEqual(got, []int64{0, 1024, 4096}) {
		t.Fatalf("slots %v, want [0 1024 4096] for weights prose 1, code 3", got)
	}
	sc := s.scheduler()
	for blk := int64(0); blk < 3; blk++ {
		n := map[int]int{}
		for j := int64(0); j < BlockSlots; j++ {
			g := blk*BlockSlots + j
			u, w := sc.locate(Cursor{Epoch: g / s.EpochLen(), Position: g % s.EpochLen()})
			n[u]++
			if w < 0 || w >= s.units[u].windows {
				t.Fatalf("window %d outside domain %s's %d windows", w, s.units[u].name, s.units[u].windows)
			}
		}
		if n[0] != 1024 || n[1] != 3072 {
			t.Fatalf("block %d: %d prose and %d code examples, want 1024 and 3072", blk, n[0], n[1])
		}
	}
	// Every window of a domain comes once before any repeats.
	for u, un := range s.units {
		seen := map[int64]bool{}
		var pos int64
		for int64(len(seen)) < un.windows {
			uu, w := sc.locate(Cursor{Epoch: pos / s.EpochLen(), Position: pos % s.EpochLen()})
			pos++
			if uu != u {
				continue
			}
			if seen[w] {
				t.Fatalf("domain %s: window %d repeats before all %d windows were visited", un.name, w, un.windows)
			}
			seen[w] = true
		}
	}
	// Errors: unknown domain, negative weight, all zero.
	for _, w := range []map[string]float64{{"text": 1}, {"prose": -1}, {"prose": 0, "code": 0}} {
		if _, err := Open(StreamConfig{Dir: dir, SeqLen: 16, Batch: 1, Weights: w}, Cursor{}); err == nil {
			t.Errorf("weights %v: Open succeeded, want an error", w)
		}
	}
}

// TestOtherDomainsWeight: "*" weighs every domain the map does not name, so
// {"*": 1} streams exactly what {prose: 1, code: 1} streams, and a named
// domain keeps its own weight.
func TestOtherDomainsWeight(t *testing.T) {
	dir, _ := fixture(t)
	read := func(w map[string]float64) ([]int64, []int32) {
		s := openT(t, StreamConfig{Dir: dir, SeqLen: 16, Batch: 4, Seed: 5, Weights: w}, Cursor{})
		var toks []int32
		for i := 0; i < 20; i++ {
			b, err := s.Next()
			if err != nil {
				t.Fatal(err)
			}
			toks = append(toks, b.Tokens...)
		}
		return s.slots, toks
	}
	for _, tc := range []struct {
		star, named map[string]float64
	}{
		{map[string]float64{"*": 1}, map[string]float64{"prose": 1, "code": 1}},
		{map[string]float64{"*": 3, "prose": 1}, map[string]float64{"prose": 1, "code": 3}},
		{map[string]float64{"*": 0, "code": 1}, map[string]float64{"code": 1}},
	} {
		gotSlots, got := read(tc.star)
		wantSlots, want := read(tc.named)
		if !reflect.DeepEqual(gotSlots, wantSlots) || !reflect.DeepEqual(got, want) {
			t.Errorf("weights %v: slots %v, want %v as for %v (same tokens: %v)", tc.star, gotSlots, wantSlots, tc.named, reflect.DeepEqual(got, want))
		}
	}
}

// TestMixture: Mixture is what Open streams, so maps that resolve alike
// (scaled, or "*" for the same domains) read the same tokens, and the
// shares are the slots Open uses.
func TestMixture(t *testing.T) {
	dir, man := fixture(t)
	if mix, err := man.Mixture(nil); mix != nil || err != nil {
		t.Fatalf("Mixture(nil) = %v, %v; want nil: the unweighted stream", mix, err)
	}
	for _, w := range []map[string]float64{{"text": 1}, {"prose": math.NaN()}, {"*": 0}} {
		if _, err := man.Mixture(w); !errors.Is(err, ErrWeights) {
			t.Errorf("Mixture(%v): %v, want ErrWeights", w, err)
		}
	}
	read := func(w map[string]float64) []int32 {
		s := openT(t, StreamConfig{Dir: dir, SeqLen: 16, Batch: 4, Seed: 5, Weights: w}, Cursor{})
		var toks []int32
		for i := 0; i < 20; i++ {
			b, err := s.Next()
			if err != nil {
				t.Fatal(err)
			}
			toks = append(toks, b.Tokens...)
		}
		return toks
	}
	equal := map[string]float64{"prose": 1, "code": 1}
	want, _ := man.Mixture(equal)
	for _, w := range []map[string]float64{{"*": 1}, {"prose": 2, "code": 2}, {"prose": 1, "*": 1}} {
		got, err := man.Mixture(w)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("Mixture(%v) = %v, %v; want %v as for %v", w, got, err, want, equal)
		}
		if !reflect.DeepEqual(read(w), read(equal)) {
			t.Errorf("weights %v stream other tokens than %v", w, equal)
		}
	}
	other, _ := man.Mixture(map[string]float64{"prose": 1, "code": 3})
	if reflect.DeepEqual(other, want) {
		t.Errorf("Mixture of {prose: 1, code: 3} = %v, the same as of equal weights", other)
	}
	var sum int64
	for _, sh := range other {
		sum += sh.Slots
	}
	if sum != BlockSlots {
		t.Errorf("shares %v sum to %d slots, want %d", other, sum, BlockSlots)
	}
}

// TestDocuments: the document walk gives back every document of a split,
// decoded to its input text, as many as the manifest counts.
func TestDocuments(t *testing.T) {
	dir, man := fixture(t)
	tok := loadTok(t, dir)
	texts := map[string]string{}
	for _, d := range syntheticDocs() {
		texts[d.Text] = d.Domain
	}
	for _, split := range []string{Train, Validation} {
		var n int64
		err := Documents(context.Background(), dir, split, func(domain string, ids []int32) error {
			in := make([]int, len(ids))
			for i, id := range ids {
				in[i] = int(id)
			}
			if got := tok.Decode(in); texts[got] != domain {
				t.Fatalf("%s: document %d (%s) is not an input document of that domain: %.80q", split, n, domain, got)
			}
			n++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n != man.Splits[split].Documents {
			t.Fatalf("%s: %d documents, manifest says %d", split, n, man.Splits[split].Documents)
		}
	}
}
