//go:build !purego

#include "textflag.h"
#include "rows_amd64.h"

// Elementwise float32 kernels of vec.go, eight lanes at a time: each does
// exactly the float32 operations of the scalar loop it replaces, in the same
// order (VMULPS/VADDPS/VSUBPS, never a fused multiply-add), so results are
// bit-identical. n is a multiple of 8.

// MUL3Y: dst (DI) = (a (SI)·b (DX))·c (R8) on the eight floats at AX.
#define MUL3Y \
	VMOVUPS (SI)(AX*4), Y0 \
	VMULPS (DX)(AX*4), Y0, Y0 \
	VMULPS (R8)(AX*4), Y0, Y0 \
	VMOVUPS Y0, (DI)(AX*4)

// SGRADY: swigluGrad32x8's eight-lane step at float AX with dg (DI), du
// (R9), dh (SI), g (DX), u (R8), s (BX); Y7 = 1.
#define SGRADY \
	VMOVUPS (SI)(AX*4), Y0 \
	VMOVUPS (DX)(AX*4), Y1 \
	VMOVUPS (BX)(AX*4), Y2 \
	VMULPS (R8)(AX*4), Y0, Y3 \
	VMULPS Y2, Y3, Y3 \
	VSUBPS Y2, Y7, Y4 \
	VMULPS Y4, Y1, Y4 \
	VADDPS Y4, Y7, Y4 \
	VMULPS Y4, Y3, Y3 \
	VMULPS Y1, Y0, Y5 \
	VMULPS Y2, Y5, Y5 \
	VMOVUPS Y3, (DI)(AX*4) \
	VMOVUPS Y5, (R9)(AX*4)

// func mul3x8(dst, a, b, c *float32, n int)
// dst = (a·b)·c
TEXT ·mul3x8(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ c+24(FP), R8
	MOVQ n+32(FP), CX
	XORQ AX, AX
mul3Loop:
	CMPQ AX, CX
	JGE mul3Done
	MUL3Y
	ADDQ $8, AX
	JMP mul3Loop
mul3Done:
	VZEROUPPER
	RET

// func axpy32x8(y, x *float32, a float32, n int)
// y = y + a·x
TEXT ·axpy32x8(SB), NOSPLIT, $0-32
	MOVQ y+0(FP), DI
	MOVQ x+8(FP), SI
	VBROADCASTSS a+16(FP), Y1
	MOVQ n+24(FP), CX
	XORQ AX, AX
axpyLoop:
	CMPQ AX, CX
	JGE axpyDone
	VMULPS (SI)(AX*4), Y1, Y0
	VADDPS (DI)(AX*4), Y0, Y0
	VMOVUPS Y0, (DI)(AX*4)
	ADDQ $8, AX
	JMP axpyLoop
axpyDone:
	VZEROUPPER
	RET

// func add32x8(y, x *float32, n int)
// y = y + x
TEXT ·add32x8(SB), NOSPLIT, $0-24
	MOVQ y+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ n+16(FP), CX
	XORQ AX, AX
addLoop:
	CMPQ AX, CX
	JGE addDone
	VMOVUPS (DI)(AX*4), Y0
	VADDPS (SI)(AX*4), Y0, Y0
	VMOVUPS Y0, (DI)(AX*4)
	ADDQ $8, AX
	JMP addLoop
addDone:
	VZEROUPPER
	RET

// func scale32x8(x *float32, a float32, n int)
// x = x·a
TEXT ·scale32x8(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), DI
	VBROADCASTSS a+8(FP), Y1
	MOVQ n+16(FP), CX
	XORQ AX, AX
scaleLoop:
	CMPQ AX, CX
	JGE scaleDone
	VMULPS (DI)(AX*4), Y1, Y0
	VMOVUPS Y0, (DI)(AX*4)
	ADDQ $8, AX
	JMP scaleLoop
scaleDone:
	VZEROUPPER
	RET

// func swigluGrad32x8(dg, du, dh, gate, u, s *float32, n int)
// dg = ((dh·u)·s)·(1 + g·(1 − s)), du = (dh·g)·s; dg may alias g and du u
// (every lane is loaded before it is stored).
TEXT ·swigluGrad32x8(SB), NOSPLIT, $0-56
	MOVQ dg+0(FP), DI
	MOVQ du+8(FP), R9
	MOVQ dh+16(FP), SI
	MOVQ gate+24(FP), DX
	MOVQ u+32(FP), R8
	MOVQ s+40(FP), BX
	MOVQ n+48(FP), CX
	VBROADCASTSS ·one32(SB), Y7
	XORQ AX, AX
sgLoop:
	CMPQ AX, CX
	JGE sgDone
	SGRADY // dh·u·s·(1 + g·(1 − s)), dh·g·s
	ADDQ $8, AX
	JMP sgLoop
sgDone:
	VZEROUPPER
	RET

// ROTSTEP(FIRST, SECOND) on floats AX..AX+7 of a head's halves, x1 at SI,
// x2 at R9, cos at DX, sin at R8: FIRST(x1·c, x2·s) to DI and
// SECOND(x2·c, x1·s) to R10.
#define ROTSTEP(FIRST, SECOND) \
	VMOVUPS (SI)(AX*4), Y0 \
	VMOVUPS (R9)(AX*4), Y1 \
	VMOVUPS (DX)(AX*4), Y2 \
	VMOVUPS (R8)(AX*4), Y3 \
	VMULPS Y2, Y0, Y4 \
	VMULPS Y3, Y1, Y5 \
	FIRST Y5, Y4, Y4 \
	VMULPS Y2, Y1, Y5 \
	VMULPS Y3, Y0, Y6 \
	SECOND Y6, Y5, Y5 \
	VMOVUPS Y4, (DI)(AX*4) \
	VMOVUPS Y5, (R10)(AX*4)

// ROTY rotates: x1·c − x2·s and x2·c + x1·s.
#define ROTY ROTSTEP(VSUBPS, VADDPS)

// UNROTY is its transpose: g1·c + g2·s and g2·c − g1·s.
#define UNROTY ROTSTEP(VADDPS, VSUBPS)

// func rotate32x8(dst, src, cos, sin *float32, half int)
// dst[j] = x1·c − x2·s, dst[j+half] = x2·c + x1·s; dst may be src.
TEXT ·rotate32x8(SB), NOSPLIT, $0-40
	ROTARGS
	XORQ AX, AX
rotLoop:
	CMPQ AX, CX
	JGE rotDone
	ROTY
	ADDQ $8, AX
	JMP rotLoop
rotDone:
	VZEROUPPER
	RET

// func unrotate32x8(dst, src, cos, sin *float32, half int)
// dst[j] = g1·c + g2·s, dst[j+half] = g2·c − g1·s; dst may be src.
TEXT ·unrotate32x8(SB), NOSPLIT, $0-40
	ROTARGS
	XORQ AX, AX
unrotLoop:
	CMPQ AX, CX
	JGE unrotDone
	UNROTY
	ADDQ $8, AX
	JMP unrotLoop
unrotDone:
	VZEROUPPER
	RET

// func rotateRows32x8(dst, src, cos, sin *float32, rows, dstStride, srcStride, half int)
// rotate32x8 on rows rows (dstStride and srcStride floats apart), cos and
// sin advancing a row of half floats each (one head of a sequence,
// position by position).
TEXT ·rotateRows32x8(SB), NOSPLIT, $0-64
	ROTROWS(ROTY, rotrRow, rotrLoop, rotrNext, rotrDone)

// func unrotateRows32x8(dst, src, cos, sin *float32, rows, dstStride, srcStride, half int)
// unrotate32x8 on rows as rotateRows32x8 walks them.
TEXT ·unrotateRows32x8(SB), NOSPLIT, $0-64
	ROTROWS(UNROTY, unrotrRow, unrotrLoop, unrotrNext, unrotrDone)

// func shift32x8(x *float32, c float32, n int)
// x = x − c
TEXT ·shift32x8(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), DI
	VBROADCASTSS c+8(FP), Y1
	MOVQ n+16(FP), CX
	XORQ AX, AX
shiftLoop:
	CMPQ AX, CX
	JGE shiftDone
	VMOVUPS (DI)(AX*4), Y0
	VSUBPS Y1, Y0, Y0
	VMOVUPS Y0, (DI)(AX*4)
	ADDQ $8, AX
	JMP shiftLoop
shiftDone:
	VZEROUPPER
	RET

// func dsoftmax32x8(dg, p *float32, c float32, n int)
// dg = p·(dg − c)
TEXT ·dsoftmax32x8(SB), NOSPLIT, $0-32
	MOVQ dg+0(FP), DI
	MOVQ p+8(FP), SI
	VBROADCASTSS c+16(FP), Y1
	MOVQ n+24(FP), CX
	XORQ AX, AX
dsmLoop:
	CMPQ AX, CX
	JGE dsmDone
	VMOVUPS (DI)(AX*4), Y0
	VSUBPS Y1, Y0, Y0
	VMULPS (SI)(AX*4), Y0, Y0
	VMOVUPS Y0, (DI)(AX*4)
	ADDQ $8, AX
	JMP dsmLoop
dsmDone:
	VZEROUPPER
	RET

// func rmsScale32x8(y, w, x *float32, r float32, n int)
// y = w·(x·r)
TEXT ·rmsScale32x8(SB), NOSPLIT, $0-40
	MOVQ y+0(FP), DI
	MOVQ w+8(FP), SI
	MOVQ x+16(FP), DX
	VBROADCASTSS r+24(FP), Y1
	MOVQ n+32(FP), CX
	XORQ AX, AX
rsLoop:
	CMPQ AX, CX
	JGE rsDone
	VMULPS (DX)(AX*4), Y1, Y0
	VMULPS (SI)(AX*4), Y0, Y0
	VMOVUPS Y0, (DI)(AX*4)
	ADDQ $8, AX
	JMP rsLoop
rsDone:
	VZEROUPPER
	RET

// RMSGRAD(X, R, C, loop, done): for the CX floats (AX from 0 in steps of
// 8) of dx at DI, pw at R9, w at SI, dy at DX and x at X, with r and c
// broadcast in R and C: dx = (r·w)·dy − x·c, pw = pw + (dy·x)·r.
// Clobbers Y0-Y4.
#define RMSGRAD(X, R, C, loop, done) \
	XORQ AX, AX \
loop: \
	CMPQ AX, CX \
	JGE done \
	VMOVUPS (DX)(AX*4), Y1 \
	VMOVUPS (X)(AX*4), Y2 \
	VMULPS (SI)(AX*4), R, Y0 \
	VMULPS Y1, Y0, Y0 \
	VMULPS C, Y2, Y3 \
	VSUBPS Y3, Y0, Y0 \
	VMOVUPS Y0, (DI)(AX*4) \
	VMULPS Y2, Y1, Y4 \
	VMULPS R, Y4, Y4 \
	VADDPS (R9)(AX*4), Y4, Y4 \
	VMOVUPS Y4, (R9)(AX*4) \
	ADDQ $8, AX \
	JMP loop \
done:

// func rmsGrad32x8(dx, pw, w, dy, x *float32, r, c float32, n int)
// dx = (r·w)·dy − x·c, pw = pw + (dy·x)·r
TEXT ·rmsGrad32x8(SB), NOSPLIT, $0-56
	MOVQ dx+0(FP), DI
	MOVQ pw+8(FP), R9
	MOVQ w+16(FP), SI
	MOVQ dy+24(FP), DX
	MOVQ x+32(FP), R8
	VBROADCASTSS r+40(FP), Y6
	VBROADCASTSS c+44(FP), Y7
	MOVQ n+48(FP), CX
	RMSGRAD(R8, Y6, Y7, rgLoop, rgDone)
	VZEROUPPER
	RET

// SUMTERM(off, acc): acc = gate (Y8) times the row's eight floats at byte
// off of DX, plus acc: one step of axpy32x8, the same operations.
#define SUMTERM(off, acc) \
	VMULPS off(DX), Y8, Y9 \
	VADDPS acc, Y9, acc

// func sumRows32x8(y, o *float32, offs *int, gates *float32, k, n int)
// y = (…((y + gates[0]·o[offs[0]:]) + gates[1]·o[offs[1]:]) …) over k rows
// of o, j in order: axpy32x8 k times, with y held in registers. Columns
// go 64 at a time, eight sums side by side, then eight at a time: with one
// sum the adds waited on each other (a k-long chain per eight columns),
// which kept a token's seven rows of 128 from the memory's pace.
TEXT ·sumRows32x8(SB), NOSPLIT, $0-48
	MOVQ y+0(FP), DI
	MOVQ o+8(FP), SI
	MOVQ offs+16(FP), R8
	MOVQ gates+24(FP), R9
	MOVQ k+32(FP), R10
	MOVQ n+40(FP), CX
	XORQ AX, AX
sumBlock:
	LEAQ 64(AX), R11
	CMPQ R11, CX
	JGT sumCol
	LEAQ (DI)(AX*4), R11
	VMOVUPS (R11), Y0
	VMOVUPS 32(R11), Y1
	VMOVUPS 64(R11), Y2
	VMOVUPS 96(R11), Y3
	VMOVUPS 128(R11), Y4
	VMOVUPS 160(R11), Y5
	VMOVUPS 192(R11), Y6
	VMOVUPS 224(R11), Y7
	XORQ BX, BX
sumBlockRow:
	CMPQ BX, R10
	JGE sumBlockStore
	MOVQ (R8)(BX*8), DX
	ADDQ AX, DX
	LEAQ (SI)(DX*4), DX
	VBROADCASTSS (R9)(BX*4), Y8
	SUMTERM(0, Y0)
	SUMTERM(32, Y1)
	SUMTERM(64, Y2)
	SUMTERM(96, Y3)
	SUMTERM(128, Y4)
	SUMTERM(160, Y5)
	SUMTERM(192, Y6)
	SUMTERM(224, Y7)
	INCQ BX
	JMP sumBlockRow
sumBlockStore:
	VMOVUPS Y0, (R11)
	VMOVUPS Y1, 32(R11)
	VMOVUPS Y2, 64(R11)
	VMOVUPS Y3, 96(R11)
	VMOVUPS Y4, 128(R11)
	VMOVUPS Y5, 160(R11)
	VMOVUPS Y6, 192(R11)
	VMOVUPS Y7, 224(R11)
	ADDQ $64, AX
	JMP sumBlock
sumCol:
	CMPQ AX, CX
	JGE sumDone
	VMOVUPS (DI)(AX*4), Y0
	XORQ BX, BX
sumRow:
	CMPQ BX, R10
	JGE sumStore
	MOVQ (R8)(BX*8), DX
	ADDQ AX, DX
	VBROADCASTSS (R9)(BX*4), Y1
	VMULPS (SI)(DX*4), Y1, Y1
	VADDPS Y0, Y1, Y0
	INCQ BX
	JMP sumRow
sumStore:
	VMOVUPS Y0, (DI)(AX*4)
	ADDQ $8, AX
	JMP sumCol
sumDone:
	VZEROUPPER
	RET

// func max32x8(x *float32, n int) (m float32, nan bool)
// The largest of n floats (a multiple of 8, n ≥ 8), and whether any is NaN
// (then m is meaningless). Which zero a max of zeros returns is not fixed.
TEXT ·max32x8(SB), NOSPLIT, $0-21
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	MAXNAN(SI, maxLoop, maxReduce)
	MAXREDUCE
	VMOVSS X0, m+16(FP)
	VMOVMSKPS Y1, AX
	TESTL AX, AX
	SETNE nan+20(FP)
	VZEROUPPER
	RET

// func mul3Rows32x8(h, gu, s *float32, rows, w int)
// h_i = (g_i·s_i)·u_i: the hidden rows silu(g)⊙u from the cached [g | u]
// and sigmoid rows (mul3 row by row).
TEXT ·mul3Rows32x8(SB), NOSPLIT, $0-40
	MOVQ h+0(FP), DI
	MOVQ gu+8(FP), SI
	MOVQ s+16(FP), DX
	MOVQ rows+24(FP), R10
	MOVQ w+32(FP), BX
	ROWSTRIDES(BX)
	LEAQ (SI)(R14*4), R8
	TESTQ R10, R10
	JEQ m3rDone
m3rRow:
	ROWWALK(MUL3Y, m3rLoop, m3rTail, m3rNext)
	ADDQ R12, DI
	ADDQ R12, DX
	ADDQ R11, SI
	ADDQ R11, R8
	DECQ R10
	JNZ m3rRow
m3rDone:
	VZEROUPPER
	RET

// func swigluGradRows32x8(dgu, dh, gu, s *float32, rows, w int)
// [dg_i | du_i] from dh_i, [g_i | u_i] and s_i (swigluGrad row by row, into
// a [rows, 2w] matrix of its own).
TEXT ·swigluGradRows32x8(SB), NOSPLIT, $0-48
	MOVQ dgu+0(FP), DI
	MOVQ dh+8(FP), SI
	MOVQ gu+16(FP), DX
	MOVQ s+24(FP), BX
	MOVQ rows+32(FP), R10
	MOVQ w+40(FP), CX
	ROWSTRIDES(CX)
	LEAQ (DI)(R14*4), R9
	LEAQ (DX)(R14*4), R8
	VBROADCASTSS ·one32(SB), Y7
	TESTQ R10, R10
	JEQ sgrDone
sgrRow:
	ROWWALK(SGRADY, sgrLoop, sgrTail, sgrNext)
	ADDQ R11, DI
	ADDQ R11, R9
	ADDQ R12, SI
	ADDQ R11, DX
	ADDQ R11, R8
	ADDQ R12, BX
	DECQ R10
	JNZ sgrRow
sgrDone:
	VZEROUPPER
	RET

// LANESUMS(TERMS, loop, done) sums float64 terms over eight lanes: for AX
// = 0, 8, … below CX, TERMS leaves the terms of floats AX..AX+7 in Y4
// (lanes 0-3) and Y5 (lanes 4-7), added to Y0 and Y1; SQSUMS then reduces
// them into X0.
#define LANESUMS(TERMS, loop, done) \
	VXORPD Y0, Y0, Y0 \
	VXORPD Y1, Y1, Y1 \
	XORQ AX, AX \
loop: \
	CMPQ AX, CX \
	JGE done \
	TERMS \
	VADDPD Y4, Y0, Y0 \
	VADDPD Y5, Y1, Y1 \
	ADDQ $8, AX \
	JMP loop \
done: \
	SQSUMS

// SUMTERMS: the floats at SI, widened.
#define SUMTERMS \
	VCVTPS2PD (SI)(AX*4), Y4 \
	VCVTPS2PD 16(SI)(AX*4), Y5

// DOTTERMSOF(A, B): the products of the floats at A and B, widened first
// (so each product is exact). Clobbers Y6, Y7.
#define DOTTERMSOF(A, B) DOTTERMSIN(A, B, Y4, Y5, Y6, Y7)

// DOTTERMSIN(A, B, p0, p1, t0, t1): DOTTERMSOF's products of lanes 0-3 in
// p0 and 4-7 in p1, through t0 and t1.
#define DOTTERMSIN(A, B, p0, p1, t0, t1) \
	VCVTPS2PD (A)(AX*4), p0 \
	VCVTPS2PD 16(A)(AX*4), p1 \
	VCVTPS2PD (B)(AX*4), t0 \
	VCVTPS2PD 16(B)(AX*4), t1 \
	VMULPD t0, p0, p0 \
	VMULPD t1, p1, p1

// DOTTERMS: DOTTERMSOF the floats at SI and DX (rowDot32x8's operands).
#define DOTTERMS DOTTERMSOF(SI, DX)

// DOTTAIL(A, B, END, loop, done): after LANESUMS of a dot product, the
// rest of it in order, X0 += float64(A[j])·float64(B[j]) for j = AX …
// END−1 (rowDot's Go loop). Clobbers X4, X5.
#define DOTTAIL(A, B, END, loop, done) \
loop: \
	CMPQ AX, END \
	JGE done \
	TAILTERM(A, B, X4, X5, X0) \
	INCQ AX \
	JMP loop

// TAILTERM(A, B, ta, tb, acc): acc += float64(A[AX])·float64(B[AX]),
// through ta and tb (DOTTAIL's step).
#define TAILTERM(A, B, ta, tb, acc) \
	VCVTSS2SD (A)(AX*4), ta, ta \
	VCVTSS2SD (B)(AX*4), tb, tb \
	VMULSD tb, ta, ta \
	VADDSD ta, acc, acc

// SCALE8(P, G, T) and SCALE1(P, G, T): the eight floats, or the one, at
// P + 4·AX times G (scale32's products), through T.
#define SCALE8(P, G, T) \
	VMULPS (P)(AX*4), G, T \
	VMOVUPS T, (P)(AX*4)

#define SCALE1(P, G, T) \
	VMULSS (P)(AX*4), G, T \
	VMOVSS T, (P)(AX*4)

// func rowSum32x8(x *float32, n int) float64
// Σ x_j in float64 over eight lanes (lane j mod 8), reduced by SQSUMS.
TEXT ·rowSum32x8(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	LANESUMS(SUMTERMS, rsumLoop, rsumDone)
	VMOVSD X0, ret+16(FP)
	VZEROUPPER
	RET

// func rowDot32x8(a, b *float32, n int) float64
// Σ a_j·b_j in float64 over eight lanes, reduced by SQSUMS.
TEXT ·rowDot32x8(SB), NOSPLIT, $0-32
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DX
	MOVQ n+16(FP), CX
	LANESUMS(DOTTERMS, rdotLoop, rdotDone)
	VMOVSD X0, ret+24(FP)
	VZEROUPPER
	RET

// func gateRows32x8(dgate *float64, slots *int32, gates *float64, h, dd *float32, rows, w int)
// For each of rows rows i (an even count; h's and dd's rows at i·w
// floats), with s = slots[i]: dgate[s] = Σ_j h_j·dd_j as rowDot gives it
// (the eight-lane float64 sums of the first w&^7 terms, reduced by
// SQSUMS, then the rest in order), then h's and dd's rows times
// float32(gates[i]) as scale32 does: one pass a row where the backward
// made three calls. Rows go two at a time (row B's h and dd at R13, R14),
// each with the operations of one row alone: the float64 sums and their
// reductions wait on the latency of adds, and two rows' chains side by
// side keep the cores' adders busy. An odd last row is left alone
// (gateRows takes it).
TEXT ·gateRows32x8(SB), NOSPLIT, $0-56
	MOVQ dgate+0(FP), R10
	MOVQ slots+8(FP), R8
	MOVQ gates+16(FP), R9
	MOVQ h+24(FP), SI
	MOVQ dd+32(FP), DX
	MOVQ rows+40(FP), R11
	MOVQ w+48(FP), R12
	MOVQ R12, CX
	ANDQ $-8, CX
	MOVQ R12, R15
	SHLQ $2, R15 // a row's bytes
	ANDQ $-2, R11 // whole pairs: an odd last row is left as it is
	JEQ grDone
grPair:
	LEAQ (SI)(R15*1), R13
	LEAQ (DX)(R15*1), R14
	VXORPD Y0, Y0, Y0
	VXORPD Y1, Y1, Y1
	VXORPD Y8, Y8, Y8
	VXORPD Y9, Y9, Y9
	XORQ AX, AX
gpDot:
	CMPQ AX, CX
	JGE gpDotDone
	DOTTERMSIN(SI, DX, Y4, Y5, Y6, Y7)
	VADDPD Y4, Y0, Y0
	VADDPD Y5, Y1, Y1
	DOTTERMSIN(R13, R14, Y10, Y11, Y12, Y13)
	VADDPD Y10, Y8, Y8
	VADDPD Y11, Y9, Y9
	ADDQ $8, AX
	JMP gpDot
gpDotDone:
	SQSUMSOF(Y0, Y1, X0, X1)
	SQSUMSOF(Y8, Y9, X8, X9)
gpTail: // DOTTAIL for both rows
	CMPQ AX, R12
	JGE gpStore
	TAILTERM(SI, DX, X4, X5, X0)
	TAILTERM(R13, R14, X6, X7, X8)
	INCQ AX
	JMP gpTail
gpStore:
	MOVLQSX (R8), BX
	VMOVSD X0, (R10)(BX*8)
	MOVLQSX 4(R8), BX
	VMOVSD X8, (R10)(BX*8)
	VCVTSD2SS (R9), X2, X2
	VBROADCASTSS X2, Y2
	VCVTSD2SS 8(R9), X3, X3
	VBROADCASTSS X3, Y3
	XORQ AX, AX
gpScale:
	CMPQ AX, CX
	JGE gpScaleTail
	SCALE8(SI, Y2, Y4)
	SCALE8(DX, Y2, Y5)
	SCALE8(R13, Y3, Y6)
	SCALE8(R14, Y3, Y7)
	ADDQ $8, AX
	JMP gpScale
gpScaleTail:
	CMPQ AX, R12
	JGE gpNext
	SCALE1(SI, X2, X4)
	SCALE1(DX, X2, X5)
	SCALE1(R13, X3, X6)
	SCALE1(R14, X3, X7)
	INCQ AX
	JMP gpScaleTail
gpNext:
	LEAQ (R13)(R15*1), SI
	LEAQ (R14)(R15*1), DX
	ADDQ $8, R8
	ADDQ $16, R9
	SUBQ $2, R11
	JNE grPair
grDone:
	VZEROUPPER
	RET

// SQDOTSUMS(X, W, DY, loop, done): over the CX floats at X, W, DY (AX
// from 0 in steps of 8), the float64 lane sums of x·x in Y0 (lanes 0-3)
// and Y1 (4-7), and of (w·dy)·x in Y2 and Y3, each product exact.
// Clobbers Y4-Y11.
#define SQDOTSUMS(X, W, DY, loop, done) \
	VXORPD Y0, Y0, Y0 \
	VXORPD Y1, Y1, Y1 \
	VXORPD Y2, Y2, Y2 \
	VXORPD Y3, Y3, Y3 \
	XORQ AX, AX \
loop: \
	CMPQ AX, CX \
	JGE done \
	VCVTPS2PD (X)(AX*4), Y4 \
	VCVTPS2PD 16(X)(AX*4), Y5 \
	VMULPD Y4, Y4, Y6 \
	VMULPD Y5, Y5, Y7 \
	VADDPD Y6, Y0, Y0 \
	VADDPD Y7, Y1, Y1 \
	VCVTPS2PD (W)(AX*4), Y8 \
	VCVTPS2PD 16(W)(AX*4), Y9 \
	VCVTPS2PD (DY)(AX*4), Y10 \
	VCVTPS2PD 16(DY)(AX*4), Y11 \
	VMULPD Y10, Y8, Y8 \
	VMULPD Y11, Y9, Y9 \
	VMULPD Y4, Y8, Y8 \
	VMULPD Y5, Y9, Y9 \
	VADDPD Y8, Y2, Y2 \
	VADDPD Y9, Y3, Y3 \
	ADDQ $8, AX \
	JMP loop \
done:

// func rowSquaresDot32x8(x, dy, w *float32, n int) (ss, dot float64)
// rowDot32x8(x, x, n), and Σ (w_j·dy_j)·x_j in float64 with the same
// lanes and reduction, in one pass.
TEXT ·rowSquaresDot32x8(SB), NOSPLIT, $0-48
	MOVQ x+0(FP), SI
	MOVQ dy+8(FP), DX
	MOVQ w+16(FP), R8
	MOVQ n+24(FP), CX
	SQDOTSUMS(SI, R8, DX, rsdLoop, rsdDone)
	SQSUMS
	VMOVSD X0, ss+32(FP)
	VMOVAPD Y2, Y0
	VMOVAPD Y3, Y1
	SQSUMS
	VMOVSD X0, dot+40(FP)
	VZEROUPPER
	RET

// func transpose8x8Blocks(dst *float32, ldd int, src *float32, lds int, rows, cols int)
// dst[c·ldd + r] = src[r·lds + c] for r < rows, c < cols (both multiples
// of 8), an 8×8 block at a time: eight rows loaded, transposed in
// registers (unpack, shuffle, lane permute), stored as eight rows.
TEXT ·transpose8x8Blocks(SB), NOSPLIT, $0-48
	MOVQ dst+0(FP), DI
	MOVQ ldd+8(FP), R8
	SHLQ $2, R8
	MOVQ src+16(FP), SI
	MOVQ lds+24(FP), R9
	SHLQ $2, R9
	MOVQ rows+32(FP), R10
	MOVQ cols+40(FP), R11
	XORQ R12, R12
trRows:
	CMPQ R12, R10
	JGE trDone
	MOVQ R12, AX
	IMULQ R9, AX
	ADDQ SI, AX // source rows r..r+7
	LEAQ (DI)(R12*4), BX // their place in every destination row
	XORQ R13, R13
trCols:
	CMPQ R13, R11
	JGE trNext
	LEAQ (AX)(R13*4), CX
	VMOVUPS (CX), Y0
	VMOVUPS (CX)(R9*1), Y1
	LEAQ (CX)(R9*2), DX
	VMOVUPS (DX), Y2
	VMOVUPS (DX)(R9*1), Y3
	LEAQ (DX)(R9*2), DX
	VMOVUPS (DX), Y4
	VMOVUPS (DX)(R9*1), Y5
	LEAQ (DX)(R9*2), DX
	VMOVUPS (DX), Y6
	VMOVUPS (DX)(R9*1), Y7
	VUNPCKLPS Y1, Y0, Y8
	VUNPCKHPS Y1, Y0, Y9
	VUNPCKLPS Y3, Y2, Y10
	VUNPCKHPS Y3, Y2, Y11
	VUNPCKLPS Y5, Y4, Y12
	VUNPCKHPS Y5, Y4, Y13
	VUNPCKLPS Y7, Y6, Y14
	VUNPCKHPS Y7, Y6, Y15
	VSHUFPS $0x44, Y10, Y8, Y0 // columns 0 | 4 of rows 0-3
	VSHUFPS $0xEE, Y10, Y8, Y1 // 1 | 5
	VSHUFPS $0x44, Y11, Y9, Y2 // 2 | 6
	VSHUFPS $0xEE, Y11, Y9, Y3 // 3 | 7
	VSHUFPS $0x44, Y14, Y12, Y4 // the same of rows 4-7
	VSHUFPS $0xEE, Y14, Y12, Y5
	VSHUFPS $0x44, Y15, Y13, Y6
	VSHUFPS $0xEE, Y15, Y13, Y7
	VPERM2F128 $0x20, Y4, Y0, Y8
	VPERM2F128 $0x20, Y5, Y1, Y9
	VPERM2F128 $0x20, Y6, Y2, Y10
	VPERM2F128 $0x20, Y7, Y3, Y11
	VPERM2F128 $0x31, Y4, Y0, Y12
	VPERM2F128 $0x31, Y5, Y1, Y13
	VPERM2F128 $0x31, Y6, Y2, Y14
	VPERM2F128 $0x31, Y7, Y3, Y15
	MOVQ R13, DX
	IMULQ R8, DX
	ADDQ BX, DX
	VMOVUPS Y8, (DX)
	VMOVUPS Y9, (DX)(R8*1)
	LEAQ (DX)(R8*2), DX
	VMOVUPS Y10, (DX)
	VMOVUPS Y11, (DX)(R8*1)
	LEAQ (DX)(R8*2), DX
	VMOVUPS Y12, (DX)
	VMOVUPS Y13, (DX)(R8*1)
	LEAQ (DX)(R8*2), DX
	VMOVUPS Y14, (DX)
	VMOVUPS Y15, (DX)(R8*1)
	ADDQ $8, R13
	JMP trCols
trNext:
	ADDQ $8, R12
	JMP trRows
trDone:
	VZEROUPPER
	RET

// RMSINV(ss): X12 = 1/sqrt(ss/d + eps) in float64 (rmsFromSquares's
// operations in its order), for d in X14 and eps in X15. Clobbers BX, X13.
#define RMSINV(ss) \
	VDIVSD X14, ss, X12 \
	VADDSD X15, X12, X12 \
	VSQRTSD X12, X12, X12 \
	MOVQ $0x3FF0000000000000, BX \
	MOVQ BX, X13 \
	VDIVSD X12, X13, X12

// SQUARETERMS: the squares of the floats at R12, widened first (DOTTERMS
// of x with itself).
#define SQUARETERMS \
	VCVTPS2PD (R12)(AX*4), Y4 \
	VCVTPS2PD 16(R12)(AX*4), Y5 \
	VMULPD Y4, Y4, Y4 \
	VMULPD Y5, Y5, Y5

// func rmsForwardRows32x8(y, w, x *float32, rows, d int, eps float64)
// rmsNormForward's rows (d a multiple of 8, row stride d): r = F(rmsInv)
// from rowDot32x8(x, x)'s lanes and reduction, y = w·(x·r) (rmsScale32x8),
// one call for all rows instead of two per row.
TEXT ·rmsForwardRows32x8(SB), NOSPLIT, $0-48
	MOVQ y+0(FP), DI
	MOVQ w+8(FP), SI
	MOVQ x+16(FP), R12
	MOVQ rows+24(FP), R10
	MOVQ d+32(FP), CX
	MOVQ CX, R11
	SHLQ $2, R11
	CVTSQ2SD CX, X14
	MOVSD eps+40(FP), X15
	TESTQ R10, R10
	JEQ rfDone
rfRow:
	LANESUMS(SQUARETERMS, rfSum, rfScale)
	RMSINV(X0)
	VCVTSD2SS X12, X12, X12
	VBROADCASTSS X12, Y12
	XORQ AX, AX
rfLoop:
	CMPQ AX, CX
	JGE rfNext
	VMULPS (R12)(AX*4), Y12, Y0
	VMULPS (SI)(AX*4), Y0, Y0
	VMOVUPS Y0, (DI)(AX*4)
	ADDQ $8, AX
	JMP rfLoop
rfNext:
	ADDQ R11, DI
	ADDQ R11, R12
	DECQ R10
	JNZ rfRow
rfDone:
	VZEROUPPER
	RET

// func rmsBackRows32x8(dx, pw, w, dy, x *float32, rows, d int, eps float64)
// rmsNormBackwardKernel's rows (d a multiple of 8, row stride d), all
// adding into one block's partial dw, pw: ss and dot with
// rowSquaresDot32x8's lanes and reductions, r = rmsFromSquares(ss),
// c = F(r·r·r·dot/d), then rmsGrad32x8's dx and pw; one call for all
// rows instead of two per row.
TEXT ·rmsBackRows32x8(SB), NOSPLIT, $0-64
	MOVQ dx+0(FP), DI
	MOVQ pw+8(FP), R9
	MOVQ w+16(FP), SI
	MOVQ dy+24(FP), DX
	MOVQ x+32(FP), R12
	MOVQ rows+40(FP), R10
	MOVQ d+48(FP), CX
	MOVQ CX, R11
	SHLQ $2, R11
	CVTSQ2SD CX, X14
	MOVSD eps+56(FP), X15
	TESTQ R10, R10
	JEQ rbDone
rbRow:
	SQDOTSUMS(R12, SI, DX, rbSum, rbGrad)
	SQSUMS
	VMOVAPD X0, X6 // ss
	VMOVAPD Y2, Y0
	VMOVAPD Y3, Y1
	SQSUMS // dot in X0
	RMSINV(X6)
	VMULSD X12, X12, X13
	VMULSD X12, X13, X13
	VMULSD X0, X13, X13
	VDIVSD X14, X13, X13 // r·r·r·dot/d
	VCVTSD2SS X12, X12, X12
	VCVTSD2SS X13, X13, X13
	VBROADCASTSS X12, Y12 // r
	VBROADCASTSS X13, Y13 // c
	RMSGRAD(R12, Y12, Y13, rbLoop, rbNext)
	ADDQ R11, DI
	ADDQ R11, DX
	ADDQ R11, R12
	DECQ R10
	JNZ rbRow
rbDone:
	VZEROUPPER
	RET

// PDPTERMS: DOTTERMSOF p and dp (dsoftmaxRows32x8's rowDot).
#define PDPTERMS DOTTERMSOF(SI, DI)

// func dsoftmaxRows32x8(dp, p *float32, rows, stride, k int, causal bool)
// The softmax backward on rows rows (row stride stride floats), in place:
// row i gets dp = p·(dp − c) over its first k_i floats, c =
// F(rowDot(p, dp)) (rowDot32x8's lanes and reduction, then the rest in
// order), as dsoftmax with rowDot form it row by row. Without causal,
// k_i = k (the router softmax's rows); with causal, k_i = i+1 and the row
// is cleared from k_i to its 8-row tile's end ((i&^7) + 8): a causal
// head's rows, as attention.go's headBackward32 needs them.
TEXT ·dsoftmaxRows32x8(SB), NOSPLIT, $0-41
	MOVQ dp+0(FP), DI
	MOVQ p+8(FP), SI
	MOVQ rows+16(FP), R10
	MOVQ stride+24(FP), R11
	SHLQ $2, R11 // row stride in bytes
	MOVQ k+32(FP), R13
	MOVBQZX causal+40(FP), R8
	XORQ R12, R12 // i
	TESTQ R10, R10
	JEQ cdDone
	TESTQ R8, R8
	JEQ cdRow
	MOVQ $1, R13
cdRow:
	MOVQ R13, CX
	ANDQ $-8, CX
	LANESUMS(PDPTERMS, cdDot, cdDotReduce)
	DOTTAIL(SI, DI, R13, cdDotTail, cdScale)
cdScale:
	VCVTSD2SS X0, X0, X0
	VBROADCASTSS X0, Y1
	XORQ AX, AX
cdVec:
	CMPQ AX, CX
	JGE cdTail
	VMOVUPS (DI)(AX*4), Y0
	VSUBPS Y1, Y0, Y0
	VMULPS (SI)(AX*4), Y0, Y0
	VMOVUPS Y0, (DI)(AX*4)
	ADDQ $8, AX
	JMP cdVec
cdTail:
	CMPQ AX, R13
	JGE cdClear
	VMOVSS (DI)(AX*4), X0
	VSUBSS X1, X0, X0
	VMULSS (SI)(AX*4), X0, X0
	VMOVSS X0, (DI)(AX*4)
	INCQ AX
	JMP cdTail
cdClear:
	TESTQ R8, R8
	JEQ cdNext
	MOVQ R12, DX
	ANDQ $-8, DX
	ADDQ $8, DX // the tile's end
	VXORPS X0, X0, X0
cdClearLoop:
	CMPQ AX, DX
	JGE cdCausalNext
	VMOVSS X0, (DI)(AX*4)
	INCQ AX
	JMP cdClearLoop
cdCausalNext:
	INCQ R13
cdNext:
	ADDQ R11, DI
	ADDQ R11, SI
	INCQ R12
	CMPQ R12, R10
	JLT cdRow
cdDone:
	VZEROUPPER
	RET

// func colSums64x4(col *float64, x *float32, rows, e int)
// col[j] += float64(x[r·e + j]) for r = 0 … rows−1 in turn, j < e: per
// column the adds of the Go loop, in row order (float64 addition is
// commutative, so col + x and x + col are the same bits). Four columns a
// vector with the sums in col itself (in L1: a column's next add waits
// on its store, the other columns' adds run meanwhile), then the last
// e mod 4 one at a time.
TEXT ·colSums64x4(SB), NOSPLIT, $0-32
	MOVQ col+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ rows+16(FP), R10
	MOVQ e+24(FP), R13
	MOVQ R13, CX
	ANDQ $-4, CX
	TESTQ R10, R10
	JEQ csDone
csRow:
	XORQ AX, AX
csVec:
	CMPQ AX, CX
	JGE csTail
	VCVTPS2PD (SI)(AX*4), Y0
	VADDPD (DI)(AX*8), Y0, Y0
	VMOVUPD Y0, (DI)(AX*8)
	ADDQ $4, AX
	JMP csVec
csTail:
	CMPQ AX, R13
	JGE csNext
	VCVTSS2SD (SI)(AX*4), X1, X1
	VADDSD (DI)(AX*8), X1, X1
	VMOVSD X1, (DI)(AX*8)
	INCQ AX
	JMP csTail
csNext:
	LEAQ (SI)(R13*4), SI
	DECQ R10
	JNZ csRow
csDone:
	VZEROUPPER
	RET

// func streamCopy32(dst, src *float32, n int)
// dst[i] = src[i] for i < n: dst's whole 64-byte lines with streaming
// stores (VMOVNTPS, AVX-512 F), the floats before the first and after the
// last by plain moves; then SFENCE.
TEXT ·streamCopy32(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
scHead:
	TESTQ CX, CX
	JEQ scDone
	MOVQ DI, AX
	ANDQ $63, AX
	JEQ scBody
	MOVL (SI), AX
	MOVL AX, (DI)
	ADDQ $4, SI
	ADDQ $4, DI
	DECQ CX
	JMP scHead
scBody:
	CMPQ CX, $16
	JLT scTail
	VMOVUPS (SI), Z0
	VMOVNTPS Z0, (DI)
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $16, CX
	JMP scBody
scTail:
	TESTQ CX, CX
	JEQ scDone
	MOVL (SI), AX
	MOVL AX, (DI)
	ADDQ $4, SI
	ADDQ $4, DI
	DECQ CX
	JMP scTail
scDone:
	SFENCE
	VZEROUPPER
	RET
