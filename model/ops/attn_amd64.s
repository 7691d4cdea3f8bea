//go:build !purego

#include "textflag.h"

// Causal attention products of one head on AVX-512 (attention.go's fused
// path): query rows go in tiles of eight, one sixteen-float column chunk
// at a time in eight accumulators Z0-Z7, one per row, each term an FMA
// with a broadcast element of the row. Only the tile's causal part is
// computed: columns up to i0+8 rounded up to 16 for the scores, keys up
// to i0+8 for the output. R9 = a row stride in bytes of the broadcast
// operand, R14 = 3·R9; rows 0-3 are at CX, rows 4-7 at AX = CX + 4·R9.

// TILEFMA(src): Z0-Z7 += the eight rows' elements at CX, AX times src.
#define TILEFMA(src) \
	VFMADD231PS.BCST (CX), src, Z0 \
	VFMADD231PS.BCST (CX)(R9*1), src, Z1 \
	VFMADD231PS.BCST (CX)(R9*2), src, Z2 \
	VFMADD231PS.BCST (CX)(R14*1), src, Z3 \
	VFMADD231PS.BCST (AX), src, Z4 \
	VFMADD231PS.BCST (AX)(R9*1), src, Z5 \
	VFMADD231PS.BCST (AX)(R9*2), src, Z6 \
	VFMADD231PS.BCST (AX)(R14*1), src, Z7

#define ZEROTILE \
	VPXORD Z0, Z0, Z0 \
	VPXORD Z1, Z1, Z1 \
	VPXORD Z2, Z2, Z2 \
	VPXORD Z3, Z3, Z3 \
	VPXORD Z4, Z4, Z4 \
	VPXORD Z5, Z5, Z5 \
	VPXORD Z6, Z6, Z6 \
	VPXORD Z7, Z7, Z7

// STORETILE: Z0-Z7 to the eight rows at DX (row stride R8 bytes);
// clobbers DX.
#define STORETILE \
	VMOVUPS Z0, (DX) \
	VMOVUPS Z1, (DX)(R8*1) \
	LEAQ (DX)(R8*2), DX \
	VMOVUPS Z2, (DX) \
	VMOVUPS Z3, (DX)(R8*1) \
	LEAQ (DX)(R8*2), DX \
	VMOVUPS Z4, (DX) \
	VMOVUPS Z5, (DX)(R8*1) \
	LEAQ (DX)(R8*2), DX \
	VMOVUPS Z6, (DX) \
	VMOVUPS Z7, (DX)(R8*1)

// SCALETILE: Z0-Z7 times Z31.
#define SCALETILE \
	VMULPS Z31, Z0, Z0 \
	VMULPS Z31, Z1, Z1 \
	VMULPS Z31, Z2, Z2 \
	VMULPS Z31, Z3, Z3 \
	VMULPS Z31, Z4, Z4 \
	VMULPS Z31, Z5, Z5 \
	VMULPS Z31, Z6, Z6 \
	VMULPS Z31, Z7, Z7

// SETROWS(base): CX = base, AX = base + 4·R9, R14 = 3·R9.
#define SETROWS(base) \
	MOVQ base, CX \
	LEAQ (R9)(R9*2), R14 \
	LEAQ (CX)(R9*4), AX

// STORECHUNK(next): the tile's sixteen columns at BX, scaled, to the
// eight output rows at DI, and on to the next chunk.
#define STORECHUNK(next) \
	SCALETILE \
	LEAQ (DI)(BX*4), DX \
	STORETILE \
	ADDQ $16, BX \
	JMP next

// NEXTTILE(tile): DI, SI and R13 on by eight rows, and back to tile while
// rows+48(FP), counted down by eight, is not zero (both kernels keep
// their row count there: every register is taken).
#define NEXTTILE(tile) \
	LEAQ (DI)(R8*8), DI \
	LEAQ (SI)(R9*8), SI \
	ADDQ $8, R13 \
	MOVQ rows+48(FP), R12 \
	SUBQ $8, R12 \
	MOVQ R12, rows+48(FP) \
	JNZ tile

// func causalScores32(s *float32, lds int, q *float32, ldq int, kt *float32, ldk int, rows, i0, dh int, scale float32)
// s[i, j] = scale·Σ_d q[i, d]·kt[d, j] for rows i of tiles of eight
// (rows a multiple of 8; row 0 is query i0) and columns j below
// (i0' + 8) rounded up to 16, i0' the tile's first query.
TEXT ·causalScores32(SB), NOSPLIT, $0-76
	MOVQ s+0(FP), DI
	MOVQ lds+8(FP), R8
	SHLQ $2, R8
	MOVQ q+16(FP), SI
	MOVQ ldq+24(FP), R9
	SHLQ $2, R9
	MOVQ kt+32(FP), R10
	MOVQ ldk+40(FP), R11
	SHLQ $2, R11
	MOVQ rows+48(FP), R12
	MOVQ i0+56(FP), R13
	VBROADCASTSS scale+72(FP), Z31
	TESTQ R12, R12
	JEQ csDone
csTile:
	XORQ BX, BX // the column chunk, in floats
csChunk:
	// the tile's columns end at (i0 + 8) rounded up to 16: chunks start
	// below i0 + 8.
	LEAQ 8(R13), DX
	CMPQ BX, DX
	JGE csNextTile
	ZEROTILE
	SETROWS(SI)
	LEAQ (R10)(BX*4), DX // kt[0, chunk]
	MOVQ dh+64(FP), R12
csTerm:
	VMOVUPS (DX), Z8
	TILEFMA(Z8)
	ADDQ R11, DX
	ADDQ $4, CX
	ADDQ $4, AX
	DECQ R12
	JNZ csTerm
	STORECHUNK(csChunk)
csNextTile:
	NEXTTILE(csTile)
csDone:
	VZEROUPPER
	RET

// func causalPV32(o *float32, ldo int, p *float32, ldp int, v *float32, ldv int, rows, i0, dh int, scale float32)
// o[i, c] = scale·Σ_j p[i, j]·v[j, c] for rows i of tiles of eight (rows a
// multiple of 8; row 0 is query i0), c < dh (a multiple of 16), over the
// keys j below i0' + 8, i0' the tile's first query (p is zero past each
// row's own query).
TEXT ·causalPV32(SB), NOSPLIT, $0-76
	MOVQ o+0(FP), DI
	MOVQ ldo+8(FP), R8
	SHLQ $2, R8
	MOVQ p+16(FP), SI
	MOVQ ldp+24(FP), R9
	SHLQ $2, R9
	MOVQ v+32(FP), R10
	MOVQ ldv+40(FP), R11
	SHLQ $2, R11
	MOVQ i0+56(FP), R13
	VBROADCASTSS scale+72(FP), Z31
	CMPQ rows+48(FP), $0
	JEQ pvDone
pvTile:
	XORQ BX, BX // the column slab, in floats
pvSlab:
	CMPQ BX, dh+64(FP)
	JGE pvNextTile
	ZEROTILE
	SETROWS(SI)
	LEAQ (R10)(BX*4), DX // v[0, slab]
	LEAQ 8(R13), R12 // keys
pvTerm:
	VMOVUPS (DX), Z8
	TILEFMA(Z8)
	ADDQ R11, DX
	ADDQ $4, CX
	ADDQ $4, AX
	DECQ R12
	JNZ pvTerm
	STORECHUNK(pvSlab)
pvNextTile:
	NEXTTILE(pvTile)
pvDone:
	VZEROUPPER
	RET

// func causalPTB32(o *float32, ldo int, p *float32, ldp int, b *float32, ldb int, t, dh int, scale float32)
// o[j, c] = scale·Σ_i p[i, j]·b[i, c], the product pᵀ·b of a causal p
// ([t, t], zero past each row's diagonal up to its 8-row tile's end), for
// rows j in tiles of eight (t a multiple of 8), c < dh (a multiple of
// 16), over rows i from the tile's first j0 (above it p[i, j] is 0): the
// eight accumulators take p[i, j0..j0+7], consecutive floats of row i.
TEXT ·causalPTB32(SB), NOSPLIT, $0-68
	MOVQ o+0(FP), DI
	MOVQ ldo+8(FP), R8
	SHLQ $2, R8
	MOVQ p+16(FP), SI
	MOVQ ldp+24(FP), R9
	SHLQ $2, R9
	MOVQ b+32(FP), R10
	MOVQ ldb+40(FP), R11
	SHLQ $2, R11
	VBROADCASTSS scale+64(FP), Z31
	XORQ R13, R13 // j0
ptTile:
	CMPQ R13, t+48(FP)
	JGE ptDone
	XORQ BX, BX // the column slab, in floats
ptSlab:
	CMPQ BX, dh+56(FP)
	JGE ptNextTile
	ZEROTILE
	MOVQ R13, CX
	IMULQ R9, CX
	ADDQ SI, CX
	LEAQ (CX)(R13*4), CX // p[j0, j0]
	MOVQ R13, DX
	IMULQ R11, DX
	ADDQ R10, DX
	LEAQ (DX)(BX*4), DX // b[j0, slab]
	MOVQ t+48(FP), R12
	SUBQ R13, R12 // rows i = j0..t−1
ptTerm:
	VMOVUPS (DX), Z8
	VFMADD231PS.BCST 0(CX), Z8, Z0
	VFMADD231PS.BCST 4(CX), Z8, Z1
	VFMADD231PS.BCST 8(CX), Z8, Z2
	VFMADD231PS.BCST 12(CX), Z8, Z3
	VFMADD231PS.BCST 16(CX), Z8, Z4
	VFMADD231PS.BCST 20(CX), Z8, Z5
	VFMADD231PS.BCST 24(CX), Z8, Z6
	VFMADD231PS.BCST 28(CX), Z8, Z7
	ADDQ R11, DX
	ADDQ R9, CX
	DECQ R12
	JNZ ptTerm
	SCALETILE
	MOVQ R13, DX
	IMULQ R8, DX
	ADDQ DI, DX
	LEAQ (DX)(BX*4), DX // o[j0, slab]
	STORETILE
	ADDQ $16, BX
	JMP ptSlab
ptNextTile:
	ADDQ $8, R13
	JMP ptTile
ptDone:
	VZEROUPPER
	RET
