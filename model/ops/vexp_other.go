//go:build !amd64 || purego

package ops

// vexpOK is false: exp32s and sigmoid32s run the scalar functions.
const vexpOK = false

func exp32x8(dst, src *float32, n int)     { panic("ops: no vector exp on this platform") }
func sigmoid32x8(dst, src *float32, n int) { panic("ops: no vector sigmoid on this platform") }
