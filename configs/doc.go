// Package configs defines moetrain's one configuration struct and loads it
// strictly from YAML: an unknown key, a value of the wrong type or a value out
// of range is an error that names the key, and every such error in a file is
// reported at once. It is a leaf package of plain data that every other
// package may import; each package takes only its own section
// (model.New(cfg.Model), data.Open(cfg.Data), ...).
//
// # Sources, in increasing priority
//
//  1. Defaults (Default()).
//  2. The YAML file.
//  3. --set key=value overrides, each value parsed as a YAML scalar
//     ("4" is an int, "true" a bool, "1e-3" a float, "[1, 2]" a list).
//
// The resolved config is printed at the start of a run and stored with it.
// docs/CONFIG.md documents every key, its default and its meaning.
package configs
