// Package analysis measures how a trained MoE model uses its experts, on
// held-out text, at evaluation time only (the weights never change):
//
//   - Redundancy: each token's top r routed experts are disabled (the next
//     K' are used, with their raw probabilities as gates) for r up to 4/16
//     of N' (DESIGN.md §4.1, the paper's Fig. 4), reporting the loss increase.
//   - TopK: fewer activated routed experts than trained (Fig. 5).
//   - Load: per MoE layer and per domain of the dataset (prose, code), every
//     routed expert's load and the router entropy, the Jensen-Shannon
//     divergence between the domains' load distributions, and each expert's
//     share of load from its top domain (how specialised it is).
//   - Tokens: per MoE layer, how far the routing is a function of the
//     input token's id: the load entropy and its conditional entropy given
//     the id, the token purity, the load balance and the mean gate (Hash
//     routes by a fixed id table: conditional entropy 0, purity 1).
//
// Each result renders as a Table (markdown and CSV) and a gonum/plot figure
// (PNG and SVG; none for Tokens); WriteCurve, WriteLoad and WriteTokens
// write them into a directory.
// Every evaluation of one analysis scores the same held-out windows in the
// same order, so differences between its rows come from the setting alone.
package analysis
