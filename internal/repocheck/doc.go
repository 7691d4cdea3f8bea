// Package repocheck holds tests about the repository itself rather than
// about any one package: that it stands alone. No tracked file may name a
// path outside the repository (another checkout's files, a machine's home
// or work directories) or cite a document the repository does not contain;
// the paper facts the code relies on live in docs/DESIGN.md.
package repocheck
