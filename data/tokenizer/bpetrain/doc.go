// Package bpetrain learns a byte-level BPE tokenizer from texts. Only the
// preparer needs it: everything that merely loads and applies a tokenizer
// imports data/tokenizer, which does not link this trainer.
//
// # Training and tie-break
//
// Train cuts the specials out and splits the rest into pre-tokens exactly
// as Encode does (tokenizer.PreTokens) and counts them, then repeatedly
// merges the most frequent adjacent pair (counts weighted by pre-token
// frequency, updated incrementally for the pre-tokens that contain the
// merged pair). Among pairs of equal count it picks the lexicographically
// smallest (left token bytes, right token bytes), compared as raw bytes; so
// the result does not depend on map order or on the order of the training
// texts, and training twice gives a byte-identical tokenizer.json. Within a
// pre-token a merge replaces occurrences left to right without overlap
// ("aaa" -> "aa" "a").
//
// # Ids
//
// A trained tokenizer has ids 0..255 for the bytes 0x00..0xff, then one id
// per merge that made a new token (in merge order), then the specials, with
// "<|endoftext|>" first.
package bpetrain
