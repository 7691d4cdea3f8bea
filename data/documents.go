package data

import (
	"context"
	"fmt"
)

// Documents calls fn with the tokens of every document of split, without
// its EOS, in stream order: domain by domain as the manifest lists them,
// each domain's shards concatenated (a document may span two shards). Like
// Open it verifies every shard's checksum before parsing it. The slice
// passed to fn is reused after fn returns. An error from fn stops the walk
// and is returned as is. Built-in evaluation tasks read the validation
// split's text this way.
func Documents(ctx context.Context, dir, split string, fn func(domain string, tokens []int32) error) error {
	if split != Train && split != Validation {
		return fmt.Errorf("read documents: split %q, want %q or %q", split, Train, Validation)
	}
	man, err := LoadManifest(dir)
	if err != nil {
		return err
	}
	// A Stream that is never started owns the open files and checks each
	// shard against the manifest exactly as Open does.
	s := &Stream{cfg: StreamConfig{Dir: dir, Split: split}, man: man}
	defer s.closeFiles()
	eos := int32(man.Tokenizer.EOS)
	var doc, buf []int32
	for _, domain := range man.Domains {
		doc = doc[:0]
		for _, info := range man.ShardsOf(split, domain) {
			r, err := s.openShard(info)
			if err != nil {
				return err
			}
			for off := int64(0); off < info.Tokens; off += int64(len(buf)) {
				if err := ctx.Err(); err != nil {
					return err
				}
				n := min(info.Tokens-off, r.hdr.RecordTokens)
				if int64(cap(buf)) < n {
					buf = make([]int32, n)
				}
				buf = buf[:n]
				if err := r.read(off, buf); err != nil {
					return err
				}
				for _, t := range buf {
					if t != eos {
						doc = append(doc, t)
						continue
					}
					if err := fn(domain, doc); err != nil {
						return err
					}
					doc = doc[:0]
				}
			}
			// Done with this shard: release its file before the next.
			if err := s.closeFiles(); err != nil {
				return fmt.Errorf("close shard %s: %w", info.File, err)
			}
		}
		// Prepare ends every document with EOS; a tail without one is
		// still text, so it is passed on rather than dropped.
		if len(doc) > 0 {
			if err := fn(domain, doc); err != nil {
				return err
			}
		}
	}
	return nil
}
