// Row walks of vec_amd64.s and vexp_amd64.s: SwiGLU's elementwise steps
// over rows rows of width w ≥ 8: row i of an [rows, w] matrix at i·w, its
// gate and up parts of an [rows, 2w] matrix at 2i·w and (2i+1)·w. A width
// that is not a multiple of 8 ends with the row's last eight floats
// computed again (the same values: outputs must not overlap inputs). One
// call for all rows instead of two per row with the Go wrapper's checks
// around them.

// ROWSTRIDES(wreg) sets, from the width in wreg, the strides in bytes
// R11 = 8w (a [g | u] row) and R12 = 4w (a [w] row), R13 = w &^ 7 (the
// whole vectors) and R14 = w.
#define ROWSTRIDES(wreg) \
	MOVQ wreg, R14 \
	MOVQ R14, R11 \
	SHLQ $3, R11 \
	MOVQ R14, R12 \
	SHLQ $2, R12 \
	MOVQ R14, R13 \
	ANDQ $-8, R13

// ROWTAIL(STEP, done): when the row's width R14 is not a multiple of 8,
// STEP (an eight-lane step at float AX) once more on the last eight floats.
#define ROWTAIL(STEP, done) \
	CMPQ R13, R14 \
	JEQ done \
	MOVQ R14, AX \
	SUBQ $8, AX \
	STEP \
done:

// ROWWALK(STEP, loop, tail, done): STEP on every whole vector of the row
// (AX from 0 below R13), then ROWTAIL.
#define ROWWALK(STEP, loop, tail, done) \
	XORQ AX, AX \
loop: \
	CMPQ AX, R13 \
	JGE tail \
	STEP \
	ADDQ $8, AX \
	JMP loop \
tail: \
	ROWTAIL(STEP, done)

// The RoPE kernels' argument loads and row walk (vec_amd64.s). They name
// their arguments, so they live here, where vet does not read them as
// part of the function defined above them.

// ROTARGS loads a one-vector kernel's (dst, src, cos, sin, half) and
// points R9 and R10 at the second halves.
#define ROTARGS \
	MOVQ dst+0(FP), DI \
	MOVQ src+8(FP), SI \
	MOVQ cos+16(FP), DX \
	MOVQ sin+24(FP), R8 \
	MOVQ half+32(FP), CX \
	LEAQ (SI)(CX*4), R9 \
	LEAQ (DI)(CX*4), R10

// ROTROWS(STEP, row, loop, next, done) walks rows rows of a head of
// 2·half floats, written at DI with row stride R11 bytes and read at SI
// with row stride R13 bytes, the cos and sin rows (half floats, R12 bytes)
// advancing one per row; STEP on every eight floats of each half.
#define ROTROWS(STEP, row, loop, next, done) \
	MOVQ dst+0(FP), DI \
	MOVQ src+8(FP), SI \
	MOVQ cos+16(FP), DX \
	MOVQ sin+24(FP), R8 \
	MOVQ rows+32(FP), BX \
	MOVQ dstStride+40(FP), R11 \
	SHLQ $2, R11 \
	MOVQ srcStride+48(FP), R13 \
	SHLQ $2, R13 \
	MOVQ half+56(FP), CX \
	MOVQ CX, R12 \
	SHLQ $2, R12 \
	TESTQ BX, BX \
	JEQ done \
row: \
	LEAQ (SI)(R12*1), R9 \
	LEAQ (DI)(R12*1), R10 \
	XORQ AX, AX \
loop: \
	CMPQ AX, CX \
	JGE next \
	STEP \
	ADDQ $8, AX \
	JMP loop \
next: \
	ADDQ R11, DI \
	ADDQ R13, SI \
	ADDQ R12, DX \
	ADDQ R12, R8 \
	DECQ BX \
	JNZ row \
done: \
	VZEROUPPER \
	RET

// SQSUMS reduces the float64 lane sums Y0 (lanes 0-3) and Y1 (lanes 4-7)
// to one sum in X0: c_l = Y0_l + Y1_l, then (c0 + c2) + (c1 + c3).
// (vec_amd64.s's LANESUMS and vexp_amd64.s's causal rows.)
#define SQSUMS SQSUMSOF(Y0, Y1, X0, X1)

// SQSUMSOF(lo, hi, xlo, xhi): SQSUMS of the lane sums in lo and hi (xlo,
// xhi their low halves) into xlo.
#define SQSUMSOF(lo, hi, xlo, xhi) \
	VADDPD hi, lo, lo \
	VEXTRACTF128 $1, lo, xhi \
	VADDPD xhi, xlo, xlo \
	VPERMILPD $1, xlo, xhi \
	VADDSD xhi, xlo, xlo

// MAXNAN(P, loop, done): over the CX floats at P (a multiple of 8, at
// least 8), Y0 = the lane maxima and Y1 = the lanes that met a NaN (all
// ones); AX = CX after. (max32x8 and vexp_amd64.s's causal rows.)
#define MAXNAN(P, loop, done) \
	VMOVUPS (P), Y0 \
	VCMPPS $3, Y0, Y0, Y1 \
	MOVQ $8, AX \
loop: \
	CMPQ AX, CX \
	JGE done \
	VMOVUPS (P)(AX*4), Y2 \
	VCMPPS $3, Y2, Y2, Y3 \
	VORPS Y3, Y1, Y1 \
	VMAXPS Y2, Y0, Y0 \
	ADDQ $8, AX \
	JMP loop \
done:

// MAXREDUCE: X0 = the largest of Y0's lanes. Clobbers X2.
#define MAXREDUCE \
	VEXTRACTF128 $1, Y0, X2 \
	VMAXPS X2, X0, X0 \
	VPERMILPS $0x4E, X0, X2 \
	VMAXPS X2, X0, X0 \
	VPERMILPS $0xB1, X0, X2 \
	VMAXPS X2, X0, X0
