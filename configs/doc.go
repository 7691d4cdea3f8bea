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
//  2. The chain of bases: a file's top-level "base: other.yaml" (relative to
//     the file) applies first, and the file overrides it section by section.
//  3. The YAML file. A key set to null is removed, so its default applies.
//  4. --set key=value overrides, each value parsed as YAML ("4" is an int,
//     "true" a bool, "[1, 2]" a list, "{a: 1}" a map that replaces the one
//     there, "null" removes the key).
//
// A key missing from a stored run config means its default, so runs made
// before a key existed still load and resume.
//
// The resolved config is printed at the start of a run and stored with it.
// docs/CONFIG.md documents every key, its default and its meaning.
package configs
