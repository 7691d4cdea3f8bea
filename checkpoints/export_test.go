package checkpoints

// Internals the external tests (package checkpoints_test) compare with PyTorch.
var (
	BF16FromF32 = bf16FromF32
	F16FromF32  = f16FromF32
	BF16ToF32   = bf16ToF32
)
