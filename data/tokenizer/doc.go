// Package tokenizer saves, loads and applies a deterministic byte-level BPE
// tokenizer stored as a Hugging Face tokenizer.json that
// github.com/sugarme/tokenizer v0.3.0 loads and encodes to the same ids.
// Training lives in data/tokenizer/bpetrain, which builds its result with
// New, so that the model trainer and everything else that only loads a
// tokenizer do not link the BPE trainer.
//
// sugarme's own trainer orders equal-count merges by Go map order and its
// Save is a stub, so training and writing happen here; sugarme is only the
// reference loader the tests compare against.
//
// # Pipeline
//
//  1. Added tokens (specials such as "<|endoftext|>") are cut out of the
//     text first, leftmost then longest, and map straight to their ids.
//  2. The rest is pre-tokenized with the GPT-2-style pattern sugarme's
//     ByteLevel pre-tokenizer runs through Go's regexp:
//     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+,
//     with the unmatched gaps (whitespace runs) kept as pre-tokens. It is
//     written by hand (splitWords) and tested against that regexp.
//  3. Each pre-token's UTF-8 bytes start as byte tokens and are merged by
//     rank, reproducing sugarme's merge loop exactly (see bpe).
//
// # Ids
//
// New gives the specials the ids after the tokens (a trained tokenizer has
// ids 0..255 for the bytes, then the merged tokens, then the specials with
// "<|endoftext|>" first). A loaded file keeps its own ids.
//
// # Differences from Hugging Face's Rust tokenizers
//
// The file is standard, but sugarme v0.3.0 encodes a little differently
// from HF's Rust library, and this package follows sugarme:
//   - Pre-tokenization lacks GPT-2's `\s+(?!\S)` alternative: a whitespace
//     run before a word is one pre-token ("\n\n" + "foo", HF: "\n" + "\n" +
//     "foo"), and \s is ASCII only (U+00A0, \v count as punctuation).
//   - Among candidate merges of equal rank in one pre-token (overlapping
//     pairs in runs of spaces, tabs or "=") sugarme's heap, not leftmost
//     order, decides which goes first.
//   - Invalid UTF-8 bytes are kept as their own byte tokens here (so
//     Decode(Encode(s)) == s for any s); sugarme turns them into U+FFFD.
//   - sugarme splits the text at added tokens but then drops them from its
//     output (its PreTokenizedString.Normalize keeps only splits without
//     tokens): Encode("a<|endoftext|>b") is [a, EOS, b] here and [a, b]
//     there. Its matcher also mishandles several different specials in one
//     text. Append EOS by id rather than relying on the text form.
//
// Encode is safe for concurrent use and caches per-pre-token results.
package tokenizer
