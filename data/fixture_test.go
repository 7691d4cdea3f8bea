package data_test

import (
	"context"

	"github.com/moetrain/moetrain/data"
	"github.com/moetrain/moetrain/data/prepare"
)

// The package's tests read a dataset that data/prepare writes (see
// prepareFixture in helpers_test.go).
func init() {
	data.SetFixture(func(dir string) (*data.Manifest, error) {
		return prepare.Documents(context.Background(), prepare.Synthetic(1, data.FixtureDocs),
			prepare.Options{Out: dir, VocabSize: 400, ValFraction: 0.1, Seed: 7, RecordTokens: 64, ShardTokens: 1024})
	}, func() (domains, texts []string) {
		for _, d := range prepare.Synthetic(1, data.FixtureDocs) {
			domains, texts = append(domains, d.Domain), append(texts, d.Text)
		}
		return domains, texts
	})
}
