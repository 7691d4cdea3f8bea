//go:build !purego

#include "textflag.h"

// -Inf in float32: the value of lanes outside the row and of lanes already
// chosen.
DATA topKNegInf<>+0(SB)/4, $0xff800000
GLOBL topKNegInf<>(SB), RODATA|NOPTR, $4

// TKBAD(v, valid): ORs into K5 v's NaN lanes and its lanes among valid
// that hold -Inf. Clobbers K6.
#define TKBAD(v, valid) \
	VCMPPS $3, v, v, K6 \
	KORW   K6, K5, K5 \
	VCMPPS $0, Z31, v, valid, K6 \
	KORW   K6, K5, K5

// TKLOAD(row, v0, v1, v2, v3, refuse): the row's valid lanes (AX, its
// low n bits, into the masks K1..K4) into v0..v3 with the rest -Inf (Z31);
// NaN or -Inf among them jumps to refuse.
#define TKLOAD(row, v0, v1, v2, v3, refuse) \
	MOVQ    AX, R10 \
	KMOVW   R10, K1 \
	SHRQ    $16, R10 \
	KMOVW   R10, K2 \
	SHRQ    $16, R10 \
	KMOVW   R10, K3 \
	SHRQ    $16, R10 \
	KMOVW   R10, K4 \
	VMOVAPS Z31, v0 \
	VMOVAPS Z31, v1 \
	VMOVAPS Z31, v2 \
	VMOVAPS Z31, v3 \
	VMOVUPS (row), K1, v0 \
	VMOVUPS 64(row), K2, v1 \
	VMOVUPS 128(row), K3, v2 \
	VMOVUPS 192(row), K4, v3 \
	KXORW    K5, K5, K5 \
	TKBAD(v0, K1) \
	TKBAD(v1, K2) \
	TKBAD(v2, K3) \
	TKBAD(v3, K4) \
	KORTESTW K5, K5 \
	JNZ      refuse

// TKROUND(v0, v1, v2, v3, t0, t1, out): one round on the row in v0..v3:
// the maximum into every lane of t0 (a tree of VMAXPS, then across
// lanes), every lane equal to it knocked out to -Inf (+0 and -0 are
// equal, as for >) with the compares' own masks, so that the next round's
// maximum waits only for these compares, and their mask (64 bits) into
// out for TKEMIT, off that path (one lane a round, through a mask in a
// general register and back, made a round about twice as long).
// Clobbers t1, R10, R11, K1..K4.
#define TKROUND(v0, v1, v2, v3, t0, t1, out) \
	VMAXPS     v1, v0, t0 \
	VMAXPS     v3, v2, t1 \
	VMAXPS     t1, t0, t0 \
	VSHUFF32X4 $0x4e, t0, t0, t1 \
	VMAXPS     t1, t0, t0 \
	VSHUFF32X4 $0xb1, t0, t0, t1 \
	VMAXPS     t1, t0, t0 \
	VPERMILPS  $0x4e, t0, t1 \
	VMAXPS     t1, t0, t0 \
	VPERMILPS  $0xb1, t0, t1 \
	VMAXPS     t1, t0, t0 \
	VCMPPS     $0, t0, v0, K1 \
	VCMPPS     $0, t0, v1, K2 \
	VCMPPS     $0, t0, v2, K3 \
	VCMPPS     $0, t0, v3, K4 \
	VMOVAPS    Z31, K1, v0 \
	VMOVAPS    Z31, K2, v1 \
	VMOVAPS    Z31, K3, v2 \
	VMOVAPS    Z31, K4, v3 \
	KMOVW      K1, out \
	KMOVW      K2, R10 \
	SHLQ       $16, R10 \
	ORQ        R10, out \
	KMOVW      K3, R10 \
	SHLQ       $32, R10 \
	ORQ        R10, out \
	KMOVW      K4, R11 \
	SHLQ       $48, R11 \
	ORQ        R11, out

// TKEMIT(mask, idx, left, loop, done): the mask's lanes, lowest first, to
// idx while left lasts: tied values in ascending index, as topKSmall.
#define TKEMIT(mask, idx, left, loop, done) \
loop: \
	TESTQ mask, mask \
	JZ    done \
	TESTQ left, left \
	JZ    done \
	BSFQ  mask, R10 \
	MOVL  R10, (idx) \
	ADDQ  $4, idx \
	DECQ  left \
	LEAQ  -1(mask), R11 \
	ANDQ  R11, mask \
	JMP   loop \
done:

// func topK32x64(idx *int32, row *float32, n, k int) (ok bool)
//
// The k (1..16) largest of n (1..64) float32 values, AVX-512 F: the row
// sits in Z0..Z3 (lanes past n hold -Inf); each round (TKROUND) finds the
// largest value, sets every lane equal to it to -Inf and writes their
// indices, lowest first, while k lasts (TKEMIT). So values come out in
// descending order, equal values in ascending index: topKSmall's order. A
// row holding NaN or -Inf returns false at once (idx unwritten): there a
// knocked-out lane could tie with a real value, and NaN has its own rule.
TEXT ·topK32x64(SB), NOSPLIT, $0-33
	MOVQ idx+0(FP), DI
	MOVQ row+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ k+24(FP), DX
	// AX = the valid lanes: the low n bits.
	MOVQ $-1, AX
	CMPQ CX, $64
	JGE  topKMask
	MOVQ $1, AX
	SHLQ CX, AX
	DECQ AX

topKMask:
	VBROADCASTSS topKNegInf<>(SB), Z31
	TKLOAD(SI, Z0, Z1, Z2, Z3, topKRefuse)

topKRound:
	TKROUND(Z0, Z1, Z2, Z3, Z4, Z5, R8)
	TKEMIT(R8, DI, DX, topKEmit, topKEmitted)
	TESTQ DX, DX
	JNZ   topKRound
	MOVB  $1, ok+32(FP)
	VZEROUPPER
	RET

topKRefuse:
	MOVB $0, ok+32(FP)
	VZEROUPPER
	RET

// Two rows at a time (topK32x64x2): each row's rounds are topK32x64's,
// their operations interleaved so that one row's maximum tree runs while
// the other's waits on its latency. Row A: Z0..Z3, temporaries Z4 Z5,
// indices at DI, DX still wanted, lanes out in R8; row B: Z6..Z9, Z10
// Z11, R12, R13, R9. K1..K4 serve each row's compares in turn.

// func topK32x64x2(idxA *int32, rowA *float32, idxB *int32, rowB *float32, n, k int) (okA, okB bool)
//
// topK32x64 on two rows of n values: the same choices, the same refusals.
TEXT ·topK32x64x2(SB), NOSPLIT, $0-50
	MOVQ idxA+0(FP), DI
	MOVQ idxB+16(FP), R12
	MOVQ n+32(FP), CX
	MOVQ k+40(FP), DX
	MOVQ DX, R13
	MOVB $1, okA+48(FP)
	MOVB $1, okB+49(FP)
	MOVQ $-1, AX
	CMPQ CX, $64
	JGE  tk2Mask
	MOVQ $1, AX
	SHLQ CX, AX
	DECQ AX

tk2Mask:
	VBROADCASTSS topKNegInf<>(SB), Z31
	MOVQ rowA+8(FP), SI
	TKLOAD(SI, Z0, Z1, Z2, Z3, tk2RefuseA)

tk2LoadB:
	MOVQ rowB+24(FP), SI
	TKLOAD(SI, Z6, Z7, Z8, Z9, tk2RefuseB)

tk2Round:
	XORQ R8, R8
	XORQ R9, R9
	TESTQ DX, DX
	JZ    tk2B
	TKROUND(Z0, Z1, Z2, Z3, Z4, Z5, R8)

tk2B:
	TESTQ R13, R13
	JZ    tk2Emit
	TKROUND(Z6, Z7, Z8, Z9, Z10, Z11, R9)

tk2Emit:
	TKEMIT(R8, DI, DX, tk2EmitA, tk2EmitADone)
	TKEMIT(R9, R12, R13, tk2EmitB, tk2EmitBDone)
	MOVQ DX, R10
	ORQ  R13, R10
	JNZ  tk2Round
	VZEROUPPER
	RET

tk2RefuseA:
	MOVB $0, okA+48(FP)
	XORQ DX, DX
	JMP  tk2LoadB

tk2RefuseB:
	MOVB $0, okB+49(FP)
	XORQ R13, R13
	JMP  tk2Round
