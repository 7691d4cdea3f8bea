// Package hf writes and reads moetrain models in the public Hugging Face
// DeepseekForCausalLM layout (DESIGN.md §8): config.json, safetensors weights
// (one file, or shards with model.safetensors.index.json),
// generation_config.json and the dataset's tokenizer.json.
//
// MoE conversions are where other tools silently lose experts, so both
// directions are strict: Export reads every file it wrote back and checks
// that each tensor, every routed expert of every MoE layer included, holds
// exactly the model's values (after bf16 rounding when asked for), and Load
// refuses missing, unexpected or mis-shaped tensors, listing all of them.
//
// # Mapping
//
// Which config.json fields and tensor keys a moetrain model maps to, both
// ways, is model/hf.go's (model.HFConfig, model.ParseHFConfig,
// Model.HFTensors, Model.LoadHF); this package reads and writes the files.
//
// # Example
//
//	res, err := hf.Export(m, hf.ExportOptions{Out: "out", DType: hf.BF16, MaxPositions: 2048, Tokenizer: tokPath})
//	m2, info, err := hf.Load("out")
package hf
