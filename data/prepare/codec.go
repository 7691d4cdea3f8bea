package prepare

import (
	"github.com/moetrain/moetrain/data/tokenizer"
	"github.com/moetrain/moetrain/data/tokenizer/bpetrain"
)

// codec is what this package needs from a tokenizer. It is an interface so
// that the preparer names exactly the methods it relies on.
type codec interface {
	Encode(text string) []int
	Decode(ids []int) string
	VocabSize() int
	EOS() int
	Hash() string
	TokenBytes(id int) []byte
	Save(path string) error
}

var _ codec = (*tokenizer.Tokenizer)(nil)

func trainCodec(next func() (string, error), vocabSize int, specials []string) (codec, error) {
	t, err := bpetrain.Train(next, vocabSize, specials)
	if err != nil {
		return nil, err
	}
	return t, nil
}

func loadCodec(path string) (codec, error) {
	t, err := tokenizer.Load(path)
	if err != nil {
		return nil, err
	}
	return t, nil
}
