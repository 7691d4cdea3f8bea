// Package data is the format of a prepared dataset and its reader: it
// streams token shards to the trainer and the evaluation. Package
// data/prepare writes datasets (text sources, tokenizer training, the
// train/validation split); the trainer does not link it.
//
// # Overview
//
// A dataset directory holds:
//
//	DIR/tokenizer.json                 HF tokenizer (data/tokenizer)
//	DIR/manifest.json                  shards, token counts, checksums (Manifest)
//	DIR/<split>-<domain>-NNNNN.arrow   Apache Arrow IPC files, one "tokens"
//	                                   column (uint16, or uint32 when the vocab
//	                                   exceeds 65536), documents each followed
//	                                   by EOS
//
// Open streams training examples from such a directory. Each split is one
// concatenated token stream (shards in manifest order); example w is the
// window of SeqLen+1 tokens starting at token w*SeqLen, so every token after
// the first is a prediction target exactly once per epoch. Train windows are
// visited in an order fixed by (seed, epoch) through a keyed Feistel
// permutation with cycle walking, so the order costs O(1) memory whatever
// the corpus size, and a Cursor (epoch, position) is the whole resume state.
// The validation split is visited in file order.
//
// # Invariants
//
//   - A shard's SHA-256 is checked against the manifest before any Arrow
//     parsing; a parser failure is returned as an error, never a panic.
//   - Shards are read with ReadAt one record batch (RecordTokens tokens) at a
//     time: resident memory is O(shards), not O(tokens).
//   - data/prepare writes into DIR.tmp-* and renames it into place, so a
//     failed run leaves nothing half-written, and an existing DIR is
//     replaced only with Force.
//
// # Use from a trainer
//
//	s, err := data.Open(data.StreamConfig{Dir: dir, SeqLen: T, Batch: B, Seed: seed, Vocab: V}, ckpt.Cursor)
//	defer s.Close()
//	b, err := s.Next() // b.Tokens is B×(T+1); store b.Cursor with the checkpoint
//
// Evaluation reads the validation split once, in order:
//
//	v, err := data.Open(data.StreamConfig{Dir: dir, Split: data.Validation, SeqLen: T, Batch: B, Epochs: 1}, data.Cursor{})
//	for b, err := v.Next(); err != io.EOF; b, err = v.Next() { ... } // the last batch may have b.B < B
//
// Manifest.ID identifies the data a Cursor belongs to.
//
// The package does not depend on the model: the trainer sees only
// StreamConfig, Cursor, Batch and Manifest.
package data
