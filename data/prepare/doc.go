// Package prepare turns text into a dataset directory that package data
// reads: Run reads text sources (files, directories, stdin), trains a
// byte-level BPE tokenizer (data/tokenizer/bpetrain) or loads one
// (data/tokenizer), splits the documents into a train and a validation
// split (by document, with a seed) and writes the token shards and
// manifest.json (the layout is package data's).
// Documents does the same for documents held in memory, and Synthetic and
// SyntheticDataset make the small deterministic corpus tests use.
//
// It is what `moetrain prepare` runs; the model trainer links neither it
// nor the BPE trainer (data/tokenizer/bpetrain's deps test).
package prepare
