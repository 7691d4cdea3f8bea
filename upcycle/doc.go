// Package upcycle initialises an MoE model from a trained dense one
// (sparse upcycling, Komatsuzaki et al. 2022, arXiv 2212.05055; the
// fine-grained form is Megatron-Core's granular upcycling, He et al. 2024,
// arXiv 2410.07524): the embedding, attention, norms, output head and the
// FFNs of layers that stay dense are copied, every router starts fresh from
// the MoE config's init_seed, and each MoE layer's experts are cut from the
// dense layer's SwiGLU FFN (docs/CONFIG.md, "Upcycling", states the
// construction).
package upcycle
