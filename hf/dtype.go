package hf

import (
	"fmt"
	"strings"
)

// DType is the element type of exported weights, named as config.json's
// torch_dtype names it.
type DType string

// Export dtypes. Float32 keeps every bit; BFloat16 rounds to nearest-even
// (the dtype the public DeepSeek checkpoints use) and halves the size.
const (
	Float32  DType = "float32"
	BFloat16 DType = "bfloat16"
)

// ParseDType accepts fp32, f32, float32, bf16 and bfloat16.
func ParseDType(s string) (DType, error) {
	switch strings.ToLower(s) {
	case "fp32", "f32", "float32":
		return Float32, nil
	case "bf16", "bfloat16":
		return BFloat16, nil
	}
	return "", fmt.Errorf("dtype %q: want fp32 or bf16", s)
}
