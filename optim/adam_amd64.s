//go:build !purego

#include "textflag.h"

// func adam32x8(k *adamConsts, keep float32, w, grad, m, v *float32, n int)
// adamUpdateScalar on eight lanes, the same float32 operations in the same
// order (no fused multiply-add):
//   gj = g·scale; mj = b1·m + c1·gj; vj = b2·v + (c2·gj)·gj
//   d = √vj / sqrtBc2 + eps; w = w·keep − (stepSize·mj)/d
TEXT ·adam32x8(SB), NOSPLIT, $0-56
	MOVQ k+0(FP), R8
	VBROADCASTSS keep+8(FP), Y15
	MOVQ w+16(FP), DI
	MOVQ grad+24(FP), SI
	MOVQ m+32(FP), DX
	MOVQ v+40(FP), R9
	MOVQ n+48(FP), CX
	VBROADCASTSS 0(R8), Y8   // b1
	VBROADCASTSS 4(R8), Y9   // c1
	VBROADCASTSS 8(R8), Y10  // b2
	VBROADCASTSS 12(R8), Y11 // c2
	VBROADCASTSS 16(R8), Y12 // stepSize
	VBROADCASTSS 20(R8), Y13 // sqrtBc2
	VBROADCASTSS 24(R8), Y14 // eps
	VBROADCASTSS 28(R8), Y7  // scale
	XORQ AX, AX
adamLoop:
	CMPQ AX, CX
	JGE adamDone
	VMULPS (SI)(AX*4), Y7, Y0  // gj
	VMULPS (DX)(AX*4), Y8, Y1  // b1·m
	VMULPS Y0, Y9, Y2          // c1·gj
	VADDPS Y2, Y1, Y1          // mj
	VMULPS (R9)(AX*4), Y10, Y2 // b2·v
	VMULPS Y0, Y11, Y3         // c2·gj
	VMULPS Y0, Y3, Y3          // ·gj
	VADDPS Y3, Y2, Y2          // vj
	VSQRTPS Y2, Y3
	VDIVPS Y13, Y3, Y3         // √vj / sqrtBc2
	VADDPS Y14, Y3, Y3         // d
	VMULPS Y1, Y12, Y4         // stepSize·mj
	VDIVPS Y3, Y4, Y4          // / d
	VMULPS (DI)(AX*4), Y15, Y5 // w·keep
	VSUBPS Y4, Y5, Y5
	VMOVUPS Y5, (DI)(AX*4)
	VMOVUPS Y1, (DX)(AX*4)
	VMOVUPS Y2, (R9)(AX*4)
	ADDQ $8, AX
	JMP adamLoop
adamDone:
	VZEROUPPER
	RET

// func sumSquares64x8(t *[8]float64, g *float32, runs int)
// For each run of 64 floats of g: eight float32 lanes s += h·h over its
// eight groups of eight (lane k takes elements k, k+8, …), then t[k] +=
// float64(s[k]): sumSquares' operations, lane for lane.
TEXT ·sumSquares64x8(SB), NOSPLIT, $0-24
	MOVQ t+0(FP), DI
	MOVQ grad+8(FP), SI
	MOVQ runs+16(FP), CX
	VMOVUPD 0(DI), Y4
	VMOVUPD 32(DI), Y5
	TESTQ CX, CX
	JZ ssDone
ssLoop:
	VXORPS Y0, Y0, Y0
	VMOVUPS 0(SI), Y1
	VMULPS Y1, Y1, Y1
	VADDPS Y1, Y0, Y0
	VMOVUPS 32(SI), Y1
	VMULPS Y1, Y1, Y1
	VADDPS Y1, Y0, Y0
	VMOVUPS 64(SI), Y1
	VMULPS Y1, Y1, Y1
	VADDPS Y1, Y0, Y0
	VMOVUPS 96(SI), Y1
	VMULPS Y1, Y1, Y1
	VADDPS Y1, Y0, Y0
	VMOVUPS 128(SI), Y1
	VMULPS Y1, Y1, Y1
	VADDPS Y1, Y0, Y0
	VMOVUPS 160(SI), Y1
	VMULPS Y1, Y1, Y1
	VADDPS Y1, Y0, Y0
	VMOVUPS 192(SI), Y1
	VMULPS Y1, Y1, Y1
	VADDPS Y1, Y0, Y0
	VMOVUPS 224(SI), Y1
	VMULPS Y1, Y1, Y1
	VADDPS Y1, Y0, Y0
	VCVTPS2PD X0, Y2
	VEXTRACTF128 $1, Y0, X3
	VCVTPS2PD X3, Y3
	VADDPD Y2, Y4, Y4
	VADDPD Y3, Y5, Y5
	ADDQ $256, SI
	DECQ CX
	JNZ ssLoop
ssDone:
	VMOVUPD Y4, 0(DI)
	VMOVUPD Y5, 32(DI)
	VZEROUPPER
	RET
