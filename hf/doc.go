// Package hf converts moetrain models to and from the public Hugging Face
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
// # Mapping (DESIGN.md §8)
//
//	moetrain ffn   n_shared_experts  num_experts_per_tok  norm_topk_prob  n_routed_experts
//	dense          null              null                 false           null
//	deepseekmoe    Ks (null if 0)    K'                   false           N'
//	gshard         null              2                    true            N
//	switch         null              1                    false           N
//	hash           refused: the DeepSeek code has no hash router
//
// Import reads n_shared_experts 0 and null alike. A top-1 model imports as
// switch whatever its norm_topk_prob (renormalising one gate is a no-op in
// the HF code); top-2 with norm_topk_prob and no shared experts as gshard;
// any other routed model as deepseekmoe. Fields moetrain cannot compute
// (rope_scaling, attention_bias, tied embeddings, grouped-query attention, a
// non-softmax router, a non-SiLU activation) are refused, never ignored.
//
// # Example
//
//	res, err := hf.Export(m, hf.ExportOptions{Out: "out", DType: hf.BF16, MaxPositions: 2048, Tokenizer: tokPath})
//	m2, info, err := hf.Load("out")
package hf
