// Package serve is the live page of `moetrain serve`: a local web server
// that lists the runs under the directories it is given (run directories,
// or sweep directories holding them) and shows, for each, its training and
// held-out loss, learning rate, gradient norm, throughput, balance losses
// and per-layer expert load over training, and the compare table of the
// runs that have evaluations, updating while they train.
//
// It reads run directories (config.yaml, metrics.jsonl) on every request
// and never writes into them. The charts are SVG drawn on the server by the
// report package (the figures of `moetrain plot`), so the page needs no
// JavaScript library and the binary fetches nothing at run time; a few
// lines of inline JavaScript poll for changes and swap the page in place.
// Every number a chart shows is also in the page as a table row with data-
// attributes, for readers that are not people (tests, scripts).
package serve
