package prepare

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
)

var (
	synNouns = strings.Fields("king people land city house river mountain servant lord son daughter field water bread fire stone gate temple army shepherd")
	synVerbs = strings.Fields("saw built gave took went called spake found kept sent brought heard loved blessed followed")
	synAdjs  = strings.Fields("great holy old young strong wise good evil fair little")
	synIdent = strings.Fields("buf n err ctx val key idx count total name size off")
	synTypes = strings.Fields("int string []byte error bool float64 uint64")
)

// Synthetic returns n small deterministic documents for tests: even ones
// are "prose" (numbered verses of generated sentences), odd ones are "code"
// (Go-like functions), 100-1500 bytes each. The same seed gives the same
// corpus on every machine.
func Synthetic(seed uint64, n int) []Document {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	pick := func(s []string) string { return s[r.IntN(len(s))] }
	docs := make([]Document, n)
	for i := range docs {
		var b strings.Builder
		if i%2 == 0 {
			fmt.Fprintf(&b, "Chapter %d\n\n", i/2+1)
			for v := 1; v <= 2+r.IntN(10); v++ {
				fmt.Fprintf(&b, "  %d And the %s %s %s the %s of the %s.\n", v, pick(synAdjs), pick(synNouns), pick(synVerbs), pick(synNouns), pick(synNouns))
			}
			docs[i] = Document{Domain: "prose", Name: fmt.Sprintf("synthetic#%d", i), Text: b.String()}
			continue
		}
		fmt.Fprintf(&b, "package p%d\n\n", i)
		for f := 0; f <= r.IntN(4); f++ {
			a, t := pick(synIdent), pick(synTypes)
			fmt.Fprintf(&b, "// %s%d returns the %s of %s.\nfunc %s%d(%s %s) (%s, error) {\n", pick(synIdent), f, pick(synIdent), a, pick(synIdent), f, a, t, t)
			for s := 0; s <= r.IntN(3); s++ {
				fmt.Fprintf(&b, "\tif %s > %d {\n\t\treturn %s, nil\n\t}\n", a, r.IntN(100), a)
			}
			fmt.Fprintf(&b, "\treturn %s, fmt.Errorf(\"bad %s: %%v\", %s)\n}\n\n", a, pick(synIdent), a)
		}
		docs[i] = Document{Domain: "code", Name: fmt.Sprintf("synthetic#%d", i), Text: b.String()}
	}
	return docs
}

// SyntheticDataset prepares Synthetic(seed, docs) into the dataset directory
// out, with a tokenizer of vocab ids, valFraction of each domain's documents
// held out and small shards: the tiny dataset other packages' tests build
// once in their TestMain.
func SyntheticDataset(out string, seed uint64, docs, vocab int, valFraction float64) error {
	_, err := Documents(context.Background(), Synthetic(seed, docs), Options{
		Out: out, VocabSize: vocab, ValFraction: valFraction, Seed: 1, ShardTokens: 16384, RecordTokens: 1024,
	})
	return err
}
