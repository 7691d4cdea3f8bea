package infer

import (
	"testing"

	"gorgonia.org/tensor"

	"github.com/moetrain/moetrain/configs"
	"github.com/moetrain/moetrain/internal/blas"
	"github.com/moetrain/moetrain/model"
)

// BenchmarkGenerate times greedy decoding of 128 tokens after a 64-token
// prompt with a d=256 DeepSeekMoE (one op = one generated token).
func BenchmarkGenerate(b *testing.B) {
	if _, err := blas.Init(); err != nil {
		b.Logf("pure-Go GEMM: %v", err)
	}
	c := configs.Default().Model
	c.VocabSize, c.Hidden, c.Layers, c.Heads, c.DenseWidth = 8192, 256, 4, 4, 1024
	c.FFN, c.SharedExperts, c.RoutedExperts, c.ActiveRouted, c.ExpertWidth = configs.FFNDeepSeekMoE, 1, 15, 3, 128
	m, err := model.New(c, tensor.Float32)
	if err != nil {
		b.Fatal(err)
	}
	d, err := New(m, 64+128)
	if err != nil {
		b.Fatal(err)
	}
	prompt := randomTokens(1, 64, c.VocabSize)
	s, _ := NewSampler(0, 1, 0)
	b.ResetTimer()
	for i := 0; i < b.N; i += 128 {
		if _, err := d.Generate(prompt, GenerateOptions{MaxTokens: 128, Sampler: s}, nil); err != nil {
			b.Fatal(err)
		}
	}
}
