//go:build !purego

#include "textflag.h"

// Register tiles of rowsMatMul (rows.go) on AVX-512: eight rows of C by
// 32, 16 or 8 columns, summed over the whole of k in one pass (a running
// FMA per element, p = 0..k−1 in order). Row r of A is wherever its
// offset puts it: AX, BX, CX, DX, R9, R13, R14, R15 point at the eight
// rows, R10 is the term's byte offset in them. B's row p is at SI (on by
// R11 bytes a term), C's row r at DI + r·R8.

// ROWPTR(off, reg): reg = a + offs[off/8] floats (R10 = a, R15 = offs;
// the last use overwrites R15 itself).
#define ROWPTR(off, reg) \
	MOVQ off(R15), reg \
	LEAQ (R10)(reg*4), reg

// ROWARGS loads the shared arguments and the eight row pointers.
#define ROWARGS \
	MOVQ c+0(FP), DI \
	MOVQ ldc+8(FP), R8 \
	SHLQ $2, R8 \
	MOVQ b+32(FP), SI \
	MOVQ ldb+40(FP), R11 \
	SHLQ $2, R11 \
	MOVQ k+48(FP), R12 \
	MOVQ a+16(FP), R10 \
	MOVQ offs+24(FP), R15 \
	ROWPTR(0, AX) \
	ROWPTR(8, BX) \
	ROWPTR(16, CX) \
	ROWPTR(24, DX) \
	ROWPTR(32, R9) \
	ROWPTR(40, R13) \
	ROWPTR(48, R14) \
	ROWPTR(56, R15) \
	XORQ R10, R10

// NEXTTERM: the next term of every row and the next row of B.
#define NEXTTERM \
	ADDQ $4, R10 \
	ADDQ R11, SI \
	DECQ R12

// FMA2(row, bc, acc0, acc1): row's term times both chunks of B (Z16, Z17).
#define FMA2(row, bc, acc0, acc1) \
	VBROADCASTSS (row)(R10*1), bc \
	VFMADD231PS bc, Z16, acc0 \
	VFMADD231PS bc, Z17, acc1

// FMA1(b, acc0, …, acc7): the eight rows' terms times one chunk of B.
#define FMA1(b, acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7) \
	VFMADD231PS.BCST (AX)(R10*1), b, acc0 \
	VFMADD231PS.BCST (BX)(R10*1), b, acc1 \
	VFMADD231PS.BCST (CX)(R10*1), b, acc2 \
	VFMADD231PS.BCST (DX)(R10*1), b, acc3 \
	VFMADD231PS.BCST (R9)(R10*1), b, acc4 \
	VFMADD231PS.BCST (R13)(R10*1), b, acc5 \
	VFMADD231PS.BCST (R14)(R10*1), b, acc6 \
	VFMADD231PS.BCST (R15)(R10*1), b, acc7

// ZERO16: the 32-column tile's accumulators Z0-Z15 to zero.
#define ZERO16 \
	ZERO8(Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7) \
	ZERO8(Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15)

// ZERO8(acc0, …, acc7): a one-chunk tile's accumulators to zero.
#define ZERO8(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7) \
	VPXORD acc0, acc0, acc0 \
	VPXORD acc1, acc1, acc1 \
	VPXORD acc2, acc2, acc2 \
	VPXORD acc3, acc3, acc3 \
	VPXORD acc4, acc4, acc4 \
	VPXORD acc5, acc5, acc5 \
	VPXORD acc6, acc6, acc6 \
	VPXORD acc7, acc7, acc7

// STORE32: the 32-column tile (row r in Z2r, Z2r+1) to C's eight rows.
#define STORE32 \
	VMOVUPS Z0, (DI) \
	VMOVUPS Z1, 64(DI) \
	VMOVUPS Z2, (DI)(R8*1) \
	VMOVUPS Z3, 64(DI)(R8*1) \
	LEAQ (DI)(R8*2), DI \
	VMOVUPS Z4, (DI) \
	VMOVUPS Z5, 64(DI) \
	VMOVUPS Z6, (DI)(R8*1) \
	VMOVUPS Z7, 64(DI)(R8*1) \
	LEAQ (DI)(R8*2), DI \
	VMOVUPS Z8, (DI) \
	VMOVUPS Z9, 64(DI) \
	VMOVUPS Z10, (DI)(R8*1) \
	VMOVUPS Z11, 64(DI)(R8*1) \
	LEAQ (DI)(R8*2), DI \
	VMOVUPS Z12, (DI) \
	VMOVUPS Z13, 64(DI) \
	VMOVUPS Z14, (DI)(R8*1) \
	VMOVUPS Z15, 64(DI)(R8*1)

// STORE1(acc0, …, acc7): the accumulators to C's eight rows under K1.
#define STORE1(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7) \
	VMOVUPS acc0, K1, (DI) \
	VMOVUPS acc1, K1, (DI)(R8*1) \
	LEAQ (DI)(R8*2), DI \
	VMOVUPS acc2, K1, (DI) \
	VMOVUPS acc3, K1, (DI)(R8*1) \
	LEAQ (DI)(R8*2), DI \
	VMOVUPS acc4, K1, (DI) \
	VMOVUPS acc5, K1, (DI)(R8*1) \
	LEAQ (DI)(R8*2), DI \
	VMOVUPS acc6, K1, (DI) \
	VMOVUPS acc7, K1, (DI)(R8*1)

// Tiles of OuterSum (rows.go): C[i, j] = Σ_p A_p[i]·B_p[j] for eight rows i and
// 32, 16 or at most 8 columns j, where A_p = a + aoffs[p] and B_p = b +
// boffs[p] (both bases already on at the tile's first row and column):
// outer products of rows that lie anywhere. R9, R11 are the bases, R10,
// R13 the offset tables, R14 the term p, CX the term count; AX and BX
// point at A_p and B_p.

#define TNARGS \
	MOVQ c+0(FP), DI \
	MOVQ ldc+8(FP), R8 \
	SHLQ $2, R8 \
	MOVQ a+16(FP), R9 \
	MOVQ aoffs+24(FP), R10 \
	MOVQ b+32(FP), R11 \
	MOVQ boffs+40(FP), R13 \
	MOVQ k+48(FP), CX \
	XORQ R14, R14

// TNTERM: AX, BX at term p's rows of A and B.
#define TNTERM \
	MOVQ (R10)(R14*8), AX \
	LEAQ (R9)(AX*4), AX \
	MOVQ (R13)(R14*8), BX \
	LEAQ (R11)(BX*4), BX

// TNFMA2(off, bc, acc0, acc1): A_p's element at byte off times both chunks.
#define TNFMA2(off, bc, acc0, acc1) \
	VBROADCASTSS off(AX), bc \
	VFMADD231PS bc, Z16, acc0 \
	VFMADD231PS bc, Z17, acc1

// TNFMA1(b, acc0, …, acc7): A_p's eight elements times one chunk.
#define TNFMA1(b, acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7) \
	VFMADD231PS.BCST 0(AX), b, acc0 \
	VFMADD231PS.BCST 4(AX), b, acc1 \
	VFMADD231PS.BCST 8(AX), b, acc2 \
	VFMADD231PS.BCST 12(AX), b, acc3 \
	VFMADD231PS.BCST 16(AX), b, acc4 \
	VFMADD231PS.BCST 20(AX), b, acc5 \
	VFMADD231PS.BCST 24(AX), b, acc6 \
	VFMADD231PS.BCST 28(AX), b, acc7

// FMA24(off, zbc, ybc, zacc, yacc): A_p's element at byte off, broadcast
// into zbc (its low half ybc), times the full sixteen-column chunk (Z16)
// and the masked eight-column one (Y17).
#define FMA24(off, zbc, ybc, zacc, yacc) \
	VBROADCASTSS off(AX), zbc \
	VFMADD231PS zbc, Z16, zacc \
	VFMADD231PS ybc, Y17, yacc

// STORE24: rows r in Zr (sixteen columns) and Y(8+r) (the eight under
// K1) to C's eight rows.
#define STORE24 \
	VMOVUPS Z0, (DI) \
	VMOVUPS Y8, K1, 64(DI) \
	VMOVUPS Z1, (DI)(R8*1) \
	VMOVUPS Y9, K1, 64(DI)(R8*1) \
	LEAQ (DI)(R8*2), DI \
	VMOVUPS Z2, (DI) \
	VMOVUPS Y10, K1, 64(DI) \
	VMOVUPS Z3, (DI)(R8*1) \
	VMOVUPS Y11, K1, 64(DI)(R8*1) \
	LEAQ (DI)(R8*2), DI \
	VMOVUPS Z4, (DI) \
	VMOVUPS Y12, K1, 64(DI) \
	VMOVUPS Z5, (DI)(R8*1) \
	VMOVUPS Y13, K1, 64(DI)(R8*1) \
	LEAQ (DI)(R8*2), DI \
	VMOVUPS Z6, (DI) \
	VMOVUPS Y14, K1, 64(DI) \
	VMOVUPS Z7, (DI)(R8*1) \
	VMOVUPS Y15, K1, 64(DI)(R8*1)

// ROWSMASKED(term, store, b, acc0, …, acc7): the body of rowsTile16 and
// rowsTile8, one masked chunk (mask in K1) on sixteen- or eight-lane
// registers.
#define ROWSMASKED(term, store, b, acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7) \
	ROWARGS \
	MOVWQZX mask+56(FP), R10 \
	KMOVW R10, K1 \
	XORQ R10, R10 \
	ZERO8(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7) \
	TESTQ R12, R12 \
	JEQ store \
term: \
	VMOVUPS.Z (SI), K1, b \
	FMA1(b, acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7) \
	NEXTTERM \
	JNZ term \
store: \
	STORE1(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7) \
	VZEROUPPER \
	RET

// TNMASKED(term, store, b, acc0, …, acc7): the body of tnTile16 and
// tnTile8, as ROWSMASKED.
#define TNMASKED(term, store, b, acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7) \
	TNARGS \
	MOVWQZX mask+56(FP), AX \
	KMOVW AX, K1 \
	ZERO8(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7) \
	TESTQ CX, CX \
	JEQ store \
term: \
	TNTERM \
	VMOVUPS.Z (BX), K1, b \
	TNFMA1(b, acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7) \
	INCQ R14 \
	CMPQ R14, CX \
	JLT term \
store: \
	STORE1(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7) \
	VZEROUPPER \
	RET

// ROWS32(term, store): the 32-column tile's sums over k, row r in Z2r,
// Z2r+1, then on to store.
#define ROWS32(term, store) \
	ROWARGS \
	ZERO16 \
	TESTQ R12, R12 \
	JEQ store \
term: \
	VMOVUPS (SI), Z16 \
	VMOVUPS 64(SI), Z17 \
	FMA2(AX, Z24, Z0, Z1) \
	FMA2(BX, Z25, Z2, Z3) \
	FMA2(CX, Z26, Z4, Z5) \
	FMA2(DX, Z27, Z6, Z7) \
	FMA2(R9, Z28, Z8, Z9) \
	FMA2(R13, Z29, Z10, Z11) \
	FMA2(R14, Z30, Z12, Z13) \
	FMA2(R15, Z31, Z14, Z15) \
	NEXTTERM \
	JNZ term

// func rowsTile32(c *float32, ldc int, a *float32, offs *int, b *float32, ldb int, k int)
TEXT ·rowsTile32(SB), NOSPLIT, $0-56
	ROWS32(r32Term, r32Store)
r32Store:
	STORE32
	VZEROUPPER
	RET

// func rowsTile16(c *float32, ldc int, a *float32, offs *int, b *float32, ldb int, k int, mask uint16)
// The columns of a sixteen-column chunk that mask selects (the first ones).
TEXT ·rowsTile16(SB), NOSPLIT, $0-58
	ROWSMASKED(r16Term, r16Store, Z16, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7)

// func rowsTile8(c *float32, ldc int, a *float32, offs *int, b *float32, ldb int, k int, mask uint16)
// rowsTile16 on eight-lane registers for a last chunk of at most eight
// columns: on CPUs that split sixteen-lane FMAs in two (Zen 4) half
// their cost, so 86 columns cost 88 lanes instead of 96.
TEXT ·rowsTile8(SB), NOSPLIT, $0-58
	ROWSMASKED(r8Term, r8Store, Y16, Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7)

// func tnTile32(c *float32, ldc int, a *float32, aoffs *int, b *float32, boffs *int, k int)
TEXT ·tnTile32(SB), NOSPLIT, $0-56
	TNARGS
	ZERO16
	TESTQ CX, CX
	JEQ tn32Store
tn32Term:
	TNTERM
	VMOVUPS (BX), Z16
	VMOVUPS 64(BX), Z17
	TNFMA2(0, Z24, Z0, Z1)
	TNFMA2(4, Z25, Z2, Z3)
	TNFMA2(8, Z26, Z4, Z5)
	TNFMA2(12, Z27, Z6, Z7)
	TNFMA2(16, Z28, Z8, Z9)
	TNFMA2(20, Z29, Z10, Z11)
	TNFMA2(24, Z30, Z12, Z13)
	TNFMA2(28, Z31, Z14, Z15)
	INCQ R14
	CMPQ R14, CX
	JLT tn32Term
tn32Store:
	STORE32
	VZEROUPPER
	RET

// func tnTile16(c *float32, ldc int, a *float32, aoffs *int, b *float32, boffs *int, k int, mask uint16)
TEXT ·tnTile16(SB), NOSPLIT, $0-58
	TNMASKED(tn16Term, tn16Store, Z16, Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7)

// func tnTile8(c *float32, ldc int, a *float32, aoffs *int, b *float32, boffs *int, k int, mask uint16)
TEXT ·tnTile8(SB), NOSPLIT, $0-58
	TNMASKED(tn8Term, tn8Store, Y16, Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7)

// func tnTile24(c *float32, ldc int, a *float32, aoffs *int, b *float32, boffs *int, k int, mask uint16)
// A last chunk of 17 to 24 columns: sixteen on sixteen lanes and the rest
// (mask's) on eight, each of A_p's eight terms broadcast once for both,
// where a sixteen-column tile and an eight-column one would each load it.
TEXT ·tnTile24(SB), NOSPLIT, $0-58
	TNARGS
	MOVWQZX mask+56(FP), AX
	KMOVW AX, K1
	ZERO16
	TESTQ CX, CX
	JEQ tn24Store
tn24Term:
	TNTERM
	VMOVUPS (BX), Z16
	VMOVUPS.Z 64(BX), K1, Y17
	FMA24(0, Z24, Y24, Z0, Y8)
	FMA24(4, Z25, Y25, Z1, Y9)
	FMA24(8, Z26, Y26, Z2, Y10)
	FMA24(12, Z27, Y27, Z3, Y11)
	FMA24(16, Z28, Y28, Z4, Y12)
	FMA24(20, Z29, Y29, Z5, Y13)
	FMA24(24, Z30, Y30, Z6, Y14)
	FMA24(28, Z31, Y31, Z7, Y15)
	INCQ R14
	CMPQ R14, CX
	JLT tn24Term
tn24Store:
	STORE24
	VZEROUPPER
	RET

// NTROW(off, acc0, acc1): row off/8 of the tile (accumulators acc0, acc1)
// to C at c (DI) + coffs[off/8] floats (R8 = coffs) with streaming stores.
#define NTROW(off, acc0, acc1) \
	MOVQ off(R8), AX \
	LEAQ (DI)(AX*4), AX \
	VMOVNTPS acc0, (AX) \
	VMOVNTPS acc1, 64(AX)

// func rowsTile32NT(c *float32, coffs *int, a *float32, offs *int, b *float32, ldb int, k int)
// rowsTile32 with C's eight rows wherever coffs puts them, each written
// with streaming stores (64-byte aligned rows; the caller fences).
TEXT ·rowsTile32NT(SB), NOSPLIT, $0-56
	ROWS32(r32ntTerm, r32ntStore)
r32ntStore:
	MOVQ coffs+8(FP), R8
	NTROW(0, Z0, Z1)
	NTROW(8, Z2, Z3)
	NTROW(16, Z4, Z5)
	NTROW(24, Z6, Z7)
	NTROW(32, Z8, Z9)
	NTROW(40, Z10, Z11)
	NTROW(48, Z12, Z13)
	NTROW(56, Z14, Z15)
	VZEROUPPER
	RET

// func storeFence()
TEXT ·storeFence(SB), NOSPLIT, $0-0
	SFENCE
	RET
