package data

// FixtureDocs is fixtureDocs for fixture_test.go.
const FixtureDocs = fixtureDocs

// SetFixture gives the package's tests the preparer (see prepareFixture).
func SetFixture(prepare func(dir string) (*Manifest, error), docs func() (domains, texts []string)) {
	prepareFixture = prepare
	syntheticDocs = func() []textDoc {
		d, t := docs()
		out := make([]textDoc, len(d))
		for i := range d {
			out[i] = textDoc{Domain: d[i], Text: t[i]}
		}
		return out
	}
}
