//go:build !amd64 || purego

package blas

const rowTiles = false

func rowsTile32(c *float32, ldc int, a *float32, offs *int, b *float32, ldb int, k int) {
	panic("blas: no row tiles here")
}

func rowsTile16(c *float32, ldc int, a *float32, offs *int, b *float32, ldb int, k int, mask uint16) {
	panic("blas: no row tiles here")
}

func rowsTile8(c *float32, ldc int, a *float32, offs *int, b *float32, ldb int, k int, mask uint16) {
	panic("blas: no row tiles here")
}

func tnTile32(c *float32, ldc int, a *float32, aoffs *int, b *float32, boffs *int, k int) {
	panic("blas: no row tiles here")
}

func tnTile16(c *float32, ldc int, a *float32, aoffs *int, b *float32, boffs *int, k int, mask uint16) {
	panic("blas: no row tiles here")
}

func tnTile8(c *float32, ldc int, a *float32, aoffs *int, b *float32, boffs *int, k int, mask uint16) {
	panic("blas: no row tiles here")
}

func tnTile24(c *float32, ldc int, a *float32, aoffs *int, b *float32, boffs *int, k int, mask uint16) {
	panic("blas: no row tiles here")
}

func rowsTile32NT(c *float32, coffs *int, a *float32, offs *int, b *float32, ldb int, k int) {
	panic("blas: no row tiles on this platform")
}

func storeFence() {}
