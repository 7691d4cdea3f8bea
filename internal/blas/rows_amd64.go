//go:build !purego

package blas

import "golang.org/x/sys/cpu"

// rowTiles is whether rows_amd64.s's tiles run here: AVX-512 F for the
// sixteen-lane tiles and masks, VL for the eight-lane ones.
var rowTiles = cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL

// rowsTile32, rowsTile16 and rowsTile8 set eight rows of C over 32, 16
// (or mask's) and at most 8 (mask's) columns: row r is the product of
// a[offs[r]:offs[r]+k] and B (k rows, ldb apart).
//
//go:noescape
func rowsTile32(c *float32, ldc int, a *float32, offs *int, b *float32, ldb int, k int)

//go:noescape
func rowsTile16(c *float32, ldc int, a *float32, offs *int, b *float32, ldb int, k int, mask uint16)

//go:noescape
func rowsTile8(c *float32, ldc int, a *float32, offs *int, b *float32, ldb int, k int, mask uint16)

// tnTile32, tnTile16 and tnTile8 set eight rows of C over 32, 16 (or
// mask's) and at most 8 (mask's) columns to Σ_p A_p ⊗ B_p, A_p at
// a[aoffs[p]:], B_p at b[boffs[p]:].
//
//go:noescape
func tnTile32(c *float32, ldc int, a *float32, aoffs *int, b *float32, boffs *int, k int)

//go:noescape
func tnTile16(c *float32, ldc int, a *float32, aoffs *int, b *float32, boffs *int, k int, mask uint16)

//go:noescape
func tnTile8(c *float32, ldc int, a *float32, aoffs *int, b *float32, boffs *int, k int, mask uint16)

// tnTile24 is OuterSum's tile of a last chunk of 17 to 24 columns:
// sixteen, then mask's on eight lanes.
//
//go:noescape
func tnTile24(c *float32, ldc int, a *float32, aoffs *int, b *float32, boffs *int, k int, mask uint16)

// rowsTile32NT is rowsTile32 with row r of C at c + coffs[r] floats,
// written with streaming stores (rows 64-byte aligned).
//
//go:noescape
func rowsTile32NT(c *float32, coffs *int, a *float32, offs *int, b *float32, ldb int, k int)

// storeFence orders the streaming stores before it before every later
// store (SFENCE).
func storeFence()
