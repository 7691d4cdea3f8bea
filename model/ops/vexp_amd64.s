//go:build !purego

#include "textflag.h"
#include "rows_amd64.h"

// Vector forms of exp32 and sigmoid32 (see vexp.go): the same float32
// operations as the Go code, in the same order, on eight lanes.
//
// Registers loaded once: Y4 = 88, Y6..Y11 = polynomial p5..p0,
// Y13 = ln2Hi, Y14 = 0.5, Y15 = log2e; R8 points at vexpTable for the
// rows used as memory operands (0 lo, 32 sign, 64 int 127, 96 one,
// 128 ln2Lo).

#define LOADCONSTS \
	LEAQ ·vexpTable(SB), R8 \
	VMOVUPS 160(R8), Y4 \
	VMOVUPS 192(R8), Y6 \
	VMOVUPS 224(R8), Y7 \
	VMOVUPS 256(R8), Y8 \
	VMOVUPS 288(R8), Y9 \
	VMOVUPS 320(R8), Y10 \
	VMOVUPS 352(R8), Y11 \
	VMOVUPS 384(R8), Y13 \
	VMOVUPS 416(R8), Y14 \
	VMOVUPS 448(R8), Y15

// EXP32: Y3 = exp32(Y0). Clobbers Y0, Y1, Y2, Y5.
//   zero mask: x < -87.33654 (false for NaN)
//   x = min(88, x) with NaN kept (VMINPS returns its second source on NaN)
//   ni = trunc(x·log2e ± 0.5), sign of the half from x·log2e
//   r = (x − n·ln2Hi) − n·ln2Lo
//   p = ((((p0·r + p1)·r + p2)·r + p3)·r + p4)·r + p5
//   p = ((p·r)·r + r) + 1, times 2^ni
#define EXP32 \
	VCMPPS $1, 0(R8), Y0, Y1 \
	VMINPS Y0, Y4, Y0 \
	VMULPS Y15, Y0, Y2 \
	VANDPS 32(R8), Y2, Y3 \
	VORPS Y14, Y3, Y3 \
	VADDPS Y3, Y2, Y2 \
	VCVTTPS2DQ Y2, Y2 \
	VCVTDQ2PS Y2, Y3 \
	VMULPS Y13, Y3, Y5 \
	VSUBPS Y5, Y0, Y0 \
	VMULPS 128(R8), Y3, Y5 \
	VSUBPS Y5, Y0, Y0 \
	VMULPS Y0, Y11, Y3 \
	VADDPS Y10, Y3, Y3 \
	VMULPS Y0, Y3, Y3 \
	VADDPS Y9, Y3, Y3 \
	VMULPS Y0, Y3, Y3 \
	VADDPS Y8, Y3, Y3 \
	VMULPS Y0, Y3, Y3 \
	VADDPS Y7, Y3, Y3 \
	VMULPS Y0, Y3, Y3 \
	VADDPS Y6, Y3, Y3 \
	VMULPS Y0, Y3, Y3 \
	VMULPS Y0, Y3, Y3 \
	VADDPS Y0, Y3, Y3 \
	VADDPS 96(R8), Y3, Y3 \
	VPADDD 64(R8), Y2, Y2 \
	VPSLLD $23, Y2, Y2 \
	VMULPS Y2, Y3, Y3 \
	VANDNPS Y3, Y1, Y3


// The same functions on sixteen lanes where the CPU has AVX-512 (vexp512):
// each 16-float block runs the identical per-lane operations (so the bits
// are the same), the last 8 floats of an odd count of blocks run the AVX2
// loop. Constants are broadcast from vexpTable's rows into Z16..Z30:
// Z16 lo, Z17 sign, Z18 int 127, Z19 one, Z20 ln2Lo, Z21 88,
// Z22..Z27 p5..p0, Z28 ln2Hi, Z29 0.5, Z30 log2e.
#define LOADCONSTSZ \
	VBROADCASTSS 0(R8), Z16 \
	VBROADCASTSS 32(R8), Z17 \
	VBROADCASTSS 64(R8), Z18 \
	VBROADCASTSS 96(R8), Z19 \
	VBROADCASTSS 128(R8), Z20 \
	VBROADCASTSS 160(R8), Z21 \
	VBROADCASTSS 192(R8), Z22 \
	VBROADCASTSS 224(R8), Z23 \
	VBROADCASTSS 256(R8), Z24 \
	VBROADCASTSS 288(R8), Z25 \
	VBROADCASTSS 320(R8), Z26 \
	VBROADCASTSS 352(R8), Z27 \
	VBROADCASTSS 384(R8), Z28 \
	VBROADCASTSS 416(R8), Z29 \
	VBROADCASTSS 448(R8), Z30

// EXP32Z: Z3 = exp32(Z0), EXP32 on sixteen lanes (the zero mask in K1).
// Clobbers Z0, Z2, Z5, K1.
#define EXP32Z \
	VCMPPS $1, Z16, Z0, K1 \
	VMINPS Z0, Z21, Z0 \
	VMULPS Z30, Z0, Z2 \
	VPANDD Z17, Z2, Z3 \
	VPORD Z29, Z3, Z3 \
	VADDPS Z3, Z2, Z2 \
	VCVTTPS2DQ Z2, Z2 \
	VCVTDQ2PS Z2, Z3 \
	VMULPS Z28, Z3, Z5 \
	VSUBPS Z5, Z0, Z0 \
	VMULPS Z20, Z3, Z5 \
	VSUBPS Z5, Z0, Z0 \
	VMULPS Z0, Z27, Z3 \
	VADDPS Z26, Z3, Z3 \
	VMULPS Z0, Z3, Z3 \
	VADDPS Z25, Z3, Z3 \
	VMULPS Z0, Z3, Z3 \
	VADDPS Z24, Z3, Z3 \
	VMULPS Z0, Z3, Z3 \
	VADDPS Z23, Z3, Z3 \
	VMULPS Z0, Z3, Z3 \
	VADDPS Z22, Z3, Z3 \
	VMULPS Z0, Z3, Z3 \
	VMULPS Z0, Z3, Z3 \
	VADDPS Z0, Z3, Z3 \
	VADDPS Z19, Z3, Z3 \
	VPADDD Z18, Z2, Z2 \
	VPSLLD $23, Z2, Z2 \
	VMULPS Z2, Z3, Z3 \
	VPXORD Z3, Z3, K1, Z3

// SIGMOIDZ: Z1 = sigmoid32(Z12) as the AVX2 loops form it (e = exp32(−|a|),
// num = e where a's sign bit is set, else 1; num/(1 + e)). Clobbers Z0,
// Z2, Z3, Z5, K1, K2.
#define SIGMOIDZ \
	VPORD Z17, Z12, Z0 \
	EXP32Z \
	VMOVAPS Z19, Z1 \
	VPMOVD2M Z12, K2 \
	VMOVAPS Z3, K2, Z1 \
	VADDPS Z19, Z3, Z2 \
	VDIVPS Z2, Z1, Z1

// ZLOOPHEAD(done): jumps to done once fewer than 16 floats remain
// (AX done of CX), or at once without AVX-512.
#define ZLOOPHEAD(done) \
	MOVQ CX, R9 \
	SUBQ AX, R9 \
	CMPQ R9, $16 \
	JLT done

// func exp32x8(dst, src *float32, n int)
// n ≥ 8. A length that is not a multiple of 8 ends with its last eight
// floats as one vector, taken from src first (dst may be src) and stored
// after the main loops, which run to n &^ 7: where they overlap, the same
// values again (Y12 holds them meanwhile; neither loop touches it).
TEXT ·exp32x8(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	LOADCONSTS
	MOVQ CX, R10
	ANDQ $7, R10
	JEQ expBody
	VMOVUPS -32(SI)(CX*4), Y0
	EXP32
	VMOVAPS Y3, Y12
	ANDQ $-8, CX
expBody:
	XORQ AX, AX
	CMPB ·vexp512(SB), $0
	JEQ expLoop
	LOADCONSTSZ
expZ:
	ZLOOPHEAD(expLoop)
	VMOVUPS (SI)(AX*4), Z0
	EXP32Z
	VMOVUPS Z3, (DI)(AX*4)
	ADDQ $16, AX
	JMP expZ
expLoop:
	CMPQ AX, CX
	JGE expDone
	VMOVUPS (SI)(AX*4), Y0
	EXP32
	VMOVUPS Y3, (DI)(AX*4)
	ADDQ $8, AX
	JMP expLoop
expDone:
	TESTQ R10, R10
	JEQ expRet
	MOVQ n+16(FP), CX
	VMOVUPS Y12, -32(DI)(CX*4)
expRet:
	VZEROUPPER
	RET

// func sigmoid32x8(dst, src *float32, n int)
// s = num/(1 + e), e = exp32(−|a|), num = e where a's sign bit is set, else 1.
TEXT ·sigmoid32x8(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	LOADCONSTS
	XORQ AX, AX
	CMPB ·vexp512(SB), $0
	JEQ sigLoop
	LOADCONSTSZ
sigZ:
	ZLOOPHEAD(sigLoop)
	VMOVUPS (SI)(AX*4), Z12
	SIGMOIDZ
	VMOVUPS Z1, (DI)(AX*4)
	ADDQ $16, AX
	JMP sigZ
sigLoop:
	CMPQ AX, CX
	JGE sigDone
	VMOVUPS (SI)(AX*4), Y12
	VORPS 32(R8), Y12, Y0
	EXP32
	VMOVUPS 96(R8), Y1
	VBLENDVPS Y12, Y3, Y1, Y1
	VADDPS 96(R8), Y3, Y2
	VDIVPS Y2, Y1, Y1
	VMOVUPS Y1, (DI)(AX*4)
	ADDQ $8, AX
	JMP sigLoop
sigDone:
	VZEROUPPER
	RET

// SILUY: siluGate32x8's eight-lane step at float AX: Y12 = g (SI), s (BX)
// = sigmoid32(g), h (DI) = (g·s)·u (DX). Clobbers Y0-Y3, Y5, Y12.
#define SILUY \
	VMOVUPS (SI)(AX*4), Y12 \
	VORPS 32(R8), Y12, Y0 \
	EXP32 \
	VMOVUPS 96(R8), Y1 \
	VBLENDVPS Y12, Y3, Y1, Y1 \
	VADDPS 96(R8), Y3, Y2 \
	VDIVPS Y2, Y1, Y1 \
	VMOVUPS Y1, (BX)(AX*4) \
	VMULPS Y1, Y12, Y1 \
	VMULPS (DX)(AX*4), Y1, Y1 \
	VMOVUPS Y1, (DI)(AX*4)

// SILUZ: SILUY on sixteen lanes (SIGMOIDZ). Clobbers Z0-Z3, Z5, Z12, K1,
// K2.
#define SILUZ \
	VMOVUPS (SI)(AX*4), Z12 \
	SIGMOIDZ \
	VMOVUPS Z1, (BX)(AX*4) \
	VMULPS Z1, Z12, Z1 \
	VMULPS (DX)(AX*4), Z1, Z1 \
	VMOVUPS Z1, (DI)(AX*4)

// func siluGate32x8(h, s, g, u *float32, n int)
// s = sigmoid32(g) as sigmoid32x8, then h = (g·s)·u as mul3x8: one pass
// for SwiGLU's activation instead of two.
TEXT ·siluGate32x8(SB), NOSPLIT, $0-40
	MOVQ h+0(FP), DI
	MOVQ s+8(FP), BX
	MOVQ gate+16(FP), SI
	MOVQ up+24(FP), DX
	MOVQ n+32(FP), CX
	LOADCONSTS
	XORQ AX, AX
	CMPB ·vexp512(SB), $0
	JEQ siluLoop
	LOADCONSTSZ
siluZ:
	ZLOOPHEAD(siluLoop)
	SILUZ
	ADDQ $16, AX
	JMP siluZ
siluLoop:
	CMPQ AX, CX
	JGE siluDone
	SILUY
	ADDQ $8, AX
	JMP siluLoop
siluDone:
	VZEROUPPER
	RET

// func siluGateRows32x8(h, s, gu *float32, rows, w int)
// siluGate32x8 on rows rows of width w ≥ 8 (rows_amd64.h): row i's h and
// s at i·w, its gate and up pre-activations at gu + 2i·w and gu + (2i+1)·w
// (an expert's or SwiGLU's [g | u] rows); h and s must not overlap gu or
// each other. The constants are loaded once for all rows.
TEXT ·siluGateRows32x8(SB), NOSPLIT, $0-40
	MOVQ h+0(FP), DI
	MOVQ s+8(FP), BX
	MOVQ gu+16(FP), SI
	MOVQ rows+24(FP), R10
	MOVQ w+32(FP), CX
	ROWSTRIDES(CX)
	LEAQ (SI)(R14*4), DX
	LOADCONSTS
	CMPB ·vexp512(SB), $0
	JEQ rowsCheck
	LOADCONSTSZ
rowsCheck:
	TESTQ R10, R10
	JEQ rowsDone
rowLoop:
	XORQ AX, AX
	MOVQ R13, CX
	CMPB ·vexp512(SB), $0
	JEQ rowY
rowZ:
	ZLOOPHEAD(rowY)
	SILUZ
	ADDQ $16, AX
	JMP rowZ
rowY:
	CMPQ AX, CX
	JGE rowTail
	SILUY
	ADDQ $8, AX
	JMP rowY
rowTail:
	ROWTAIL(SILUY, rowNext)
	ADDQ R12, DI
	ADDQ R12, BX
	ADDQ R11, SI
	ADDQ R11, DX
	DECQ R10
	JNZ rowLoop
rowsDone:
	VZEROUPPER
	RET

// The softmax row steps of causalRows32x8 and softmaxRows32x8, in
// softmaxRow32's operations and order. A row has R13 = k floats; DI is
// where its softmax goes; BX its NaN flag; the constants of LOADCONSTS
// (and LOADCONSTSZ where vexp512) are loaded.

// ROWMAX(P, loop, reduce, tail, done, nan): X0 and Y12 = the max of the k
// floats at P (max32x8 on the CX = k&^7 ≥ 8 of whole vectors, then `if v >
// m` over the rest), the flag cleared; or, when the whole vectors hold a
// NaN, a jump to nan (which sets the flag).
#define ROWMAX(P, loop, reduce, tail, done, nan) \
	MAXNAN(P, loop, reduce) \
	VMOVMSKPS Y1, DX \
	TESTL DX, DX \
	JNE nan \
	MOVB $0, (BX) \
	MAXREDUCE \
tail: \
	CMPQ AX, R13 \
	JGE done \
	VMOVSS (P)(AX*4), X2 \
	VMAXSS X0, X2, X0 \
	INCQ AX \
	JMP tail \
done: \
	VBROADCASTSS X0, Y12

// EXPROW(SRC, loopz, loopy, done): DI = exp32(SRC − m) over the first CX
// floats (a multiple of 8), sixteen lanes at a time where vexp512 (Z31 =
// m), then eight (Y12 = m).
#define EXPROW(SRC, loopz, loopy, done) \
	XORQ AX, AX \
	CMPB ·vexp512(SB), $0 \
	JEQ loopy \
	VBROADCASTSS X12, Z31 \
loopz: \
	ZLOOPHEAD(loopy) \
	VMOVUPS (SRC)(AX*4), Z0 \
	VSUBPS Z31, Z0, Z0 \
	EXP32Z \
	VMOVUPS Z3, (DI)(AX*4) \
	ADDQ $16, AX \
	JMP loopz \
loopy: \
	CMPQ AX, CX \
	JGE done \
	VMOVUPS (SRC)(AX*4), Y0 \
	VSUBPS Y12, Y0, Y0 \
	EXP32 \
	VMOVUPS Y3, (DI)(AX*4) \
	ADDQ $8, AX \
	JMP loopy \
done:

// NORMROW(sum, reduce, sumtail, scale, loop, tail, done): the k
// exponentials at DI times float32(1/s), s their float64 sum in
// rowSum32x8's lanes and reduction over CX = k&^7, then the rest in
// order. AX = k after.
#define NORMROW(sum, reduce, sumtail, scale, loop, tail, done) \
	MOVQ R13, CX \
	ANDQ $-8, CX \
	VXORPD Y0, Y0, Y0 \
	VXORPD Y1, Y1, Y1 \
	XORQ AX, AX \
sum: \
	CMPQ AX, CX \
	JGE reduce \
	VCVTPS2PD (DI)(AX*4), Y2 \
	VCVTPS2PD 16(DI)(AX*4), Y3 \
	VADDPD Y2, Y0, Y0 \
	VADDPD Y3, Y1, Y1 \
	ADDQ $8, AX \
	JMP sum \
reduce: \
	SQSUMS \
sumtail: \
	CMPQ AX, R13 \
	JGE scale \
	VCVTSS2SD (DI)(AX*4), X2, X2 \
	VADDSD X2, X0, X0 \
	INCQ AX \
	JMP sumtail \
scale: \
	MOVQ $0x3FF0000000000000, DX \
	MOVQ DX, X1 \
	VDIVSD X0, X1, X1 \
	VCVTSD2SS X1, X1, X1 \
	VBROADCASTSS X1, Y1 \
	XORQ AX, AX \
loop: \
	CMPQ AX, CX \
	JGE tail \
	VMULPS (DI)(AX*4), Y1, Y0 \
	VMOVUPS Y0, (DI)(AX*4) \
	ADDQ $8, AX \
	JMP loop \
tail: \
	CMPQ AX, R13 \
	JGE done \
	VMULSS (DI)(AX*4), X1, X0 \
	VMOVSS X0, (DI)(AX*4) \
	INCQ AX \
	JMP tail \
done:

// func causalRows32x8(p *float32, nan *bool, rows, stride, n, end int)
// softmaxRow32(row[:k], row[:end]) then clear(row[k:end]) on rows rows
// of a causal score block (stride floats apart from p), row r with k = n+r
// valid floats (n ≥ 8; (k+7)&^7 ≤ end): the float32 operations of
// softmaxRow32's kernels in their order, so the same bits, in one call per
// block rather than six per row. Per row: the max as max32x8 on whole
// vectors, then `if v > m` over the rest; x − m and exp32 on whole vectors
// up to k rounded up (sixteen lanes where the CPU has AVX-512, as
// exp32x8; Z31 or Y12 holds m); the float64 sum as rowSum32x8 (LANESUMS'
// lanes, SQSUMS) then the rest in order; the floats times float32(1/sum).
// A row whose whole vectors hold a NaN is left as it is, with nan[r] set,
// for softmaxRow32's own path; nan[r] is cleared otherwise.
TEXT ·causalRows32x8(SB), NOSPLIT, $0-48
	MOVQ p+0(FP), DI
	MOVQ nan+8(FP), BX
	MOVQ rows+16(FP), R10
	MOVQ stride+24(FP), R11
	SHLQ $2, R11
	MOVQ n+32(FP), R13
	MOVQ end+40(FP), R12
	LOADCONSTS
	CMPB ·vexp512(SB), $0
	JEQ crStart
	LOADCONSTSZ
crStart:
	TESTQ R10, R10
	JEQ crDone
crRow:
	MOVQ R13, CX
	ANDQ $-8, CX
	ROWMAX(DI, crMax, crMaxReduce, crMaxTail, crShift, crNaN)
	// exp32(x − m) in place over k rounded up to whole vectors (the room).
	MOVQ R13, CX
	ADDQ $7, CX
	ANDQ $-8, CX
	EXPROW(DI, crExpZ, crExpY, crSum)
	NORMROW(crSumLoop, crSumReduce, crSumTail, crScale, crScaleLoop, crScaleTail, crClear)
	// Zeros from k to end: single floats to a whole vector, vectors, the
	// rest.
	VXORPS Y0, Y0, Y0
crClearHead:
	CMPQ AX, R12
	JGE crNext
	TESTQ $7, AX
	JEQ crClearVec
	VMOVSS X0, (DI)(AX*4)
	INCQ AX
	JMP crClearHead
crClearVec:
	LEAQ 8(AX), DX
	CMPQ DX, R12
	JG crClearTail
	VMOVUPS Y0, (DI)(AX*4)
	MOVQ DX, AX
	JMP crClearVec
crClearTail:
	CMPQ AX, R12
	JGE crNext
	VMOVSS X0, (DI)(AX*4)
	INCQ AX
	JMP crClearTail
crNaN:
	MOVB $1, (BX)
crNext:
	ADDQ R11, DI
	INCQ R13
	INCQ BX
	DECQ R10
	JNZ crRow
crDone:
	VZEROUPPER
	RET

// func softmaxRows32x8(y, x *float32, nan *bool, rows, e int)
// rowSoftmax32 on rows rows of e ≥ 8 floats (row stride e) from x into y
// (which must not overlap x), with its bits: the max as max32x8 on whole
// vectors and `if v > m` over the rest; y = exp32(x − m) on sixteen or
// eight lanes, the last partial vector as the last eight floats again
// (read from x, so the same values); the float64 sum in rowSum32x8's
// lanes and reduction, then the rest; y times float32(1/sum). A row whose
// whole vectors hold a NaN is skipped with nan[r] set, for rowSoftmax32's
// own path; nan[r] is cleared otherwise.
TEXT ·softmaxRows32x8(SB), NOSPLIT, $0-40
	MOVQ y+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ nan+16(FP), BX
	MOVQ rows+24(FP), R10
	MOVQ e+32(FP), R13
	MOVQ R13, R11
	SHLQ $2, R11
	LOADCONSTS
	CMPB ·vexp512(SB), $0
	JEQ srStart
	LOADCONSTSZ
srStart:
	TESTQ R10, R10
	JEQ srDone
srRow:
	MOVQ R13, CX
	ANDQ $-8, CX
	ROWMAX(SI, srMax, srMaxReduce, srMaxTail, srShift, srNaN)
	EXPROW(SI, srExpZ, srExpY, srExpTail)
	// The partial last vector: the last eight floats again, from x.
	CMPQ CX, R13
	JEQ srSum
	LEAQ -8(R13), AX
	VMOVUPS (SI)(AX*4), Y0
	VSUBPS Y12, Y0, Y0
	EXP32
	VMOVUPS Y3, (DI)(AX*4)
srSum:
	NORMROW(srSumLoop, srSumReduce, srSumTail, srScale, srScaleLoop, srScaleTail, srRowDone)
	JMP srNext
srNaN:
	MOVB $1, (BX)
srNext:
	ADDQ R11, SI
	ADDQ R11, DI
	INCQ BX
	DECQ R10
	JNZ srRow
srDone:
	VZEROUPPER
	RET
