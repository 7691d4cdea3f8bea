//go:build !purego

#include "textflag.h"

// -Inf in float32: the value of lanes outside the row and of lanes already
// chosen.
DATA topKNegInf<>+0(SB)/4, $0xff800000
GLOBL topKNegInf<>(SB), RODATA|NOPTR, $4

// func topK32x64(idx *int32, row *float32, n, k int) (ok bool)
//
// The k (1..16) largest of n (1..64) float32 values, AVX-512 F: the row
// sits in Z0..Z3 (lanes past n hold -Inf); each round finds the largest
// value (a tree of VMAXPS, then across lanes), sets every lane equal to it
// to -Inf and writes their indices, lowest first, while k lasts. So values
// come out in descending order, equal values in ascending index:
// topKSmall's order. A row holding
// NaN or -Inf returns false at once (idx unwritten): there a knocked-out
// lane could tie with a real value, and NaN has its own rule.
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
	VMOVAPS      Z31, Z0
	VMOVAPS      Z31, Z1
	VMOVAPS      Z31, Z2
	VMOVAPS      Z31, Z3
	MOVQ         AX, R8
	KMOVW        R8, K1
	SHRQ         $16, R8
	KMOVW        R8, K2
	SHRQ         $16, R8
	KMOVW        R8, K3
	SHRQ         $16, R8
	KMOVW        R8, K4

	// Masked loads: lanes outside the row keep -Inf and are never read.
	VMOVUPS (SI), K1, Z0
	VMOVUPS 64(SI), K2, Z1
	VMOVUPS 128(SI), K3, Z2
	VMOVUPS 192(SI), K4, Z3

	// NaN (unordered with itself) or -Inf among the valid lanes: refuse.
	VCMPPS   $3, Z0, Z0, K5
	VCMPPS   $0, Z31, Z0, K1, K6
	KORW     K6, K5, K5
	VCMPPS   $3, Z1, Z1, K6
	KORW     K6, K5, K5
	VCMPPS   $0, Z31, Z1, K2, K6
	KORW     K6, K5, K5
	VCMPPS   $3, Z2, Z2, K6
	KORW     K6, K5, K5
	VCMPPS   $0, Z31, Z2, K3, K6
	KORW     K6, K5, K5
	VCMPPS   $3, Z3, Z3, K6
	KORW     K6, K5, K5
	VCMPPS   $0, Z31, Z3, K4, K6
	KORW     K6, K5, K5
	KORTESTW K5, K5
	JNZ      topKRefuse

topKRound:
	// Z4 = the largest value, in every lane.
	VMAXPS     Z1, Z0, Z4
	VMAXPS     Z3, Z2, Z5
	VMAXPS     Z5, Z4, Z4
	VSHUFF32X4 $0x4e, Z4, Z4, Z5
	VMAXPS     Z5, Z4, Z4
	VSHUFF32X4 $0xb1, Z4, Z4, Z5
	VMAXPS     Z5, Z4, Z4
	VPERMILPS  $0x4e, Z4, Z5
	VMAXPS     Z5, Z4, Z4
	VPERMILPS  $0xb1, Z4, Z5
	VMAXPS     Z5, Z4, Z4

	// K1..K4 = the lanes equal to it (+0 and -0 are equal, as for >),
	// knocked out together: the next round's maximum waits only for these
	// compares, not for the index below (one lane a round, through a
	// mask in a general register and back, made a round about twice as
	// long).
	VCMPPS  $0, Z4, Z0, K1
	VCMPPS  $0, Z4, Z1, K2
	VCMPPS  $0, Z4, Z2, K3
	VCMPPS  $0, Z4, Z3, K4
	VMOVAPS Z31, K1, Z0
	VMOVAPS Z31, K2, Z1
	VMOVAPS Z31, K3, Z2
	VMOVAPS Z31, K4, Z3

	// R8 = those lanes as one mask; each goes out lowest first, as many
	// as are still wanted: tied values in ascending index, as topKSmall.
	KMOVW K1, R8
	KMOVW K2, R9
	KMOVW K3, R10
	KMOVW K4, R11
	SHLQ  $16, R9
	SHLQ  $32, R10
	SHLQ  $48, R11
	ORQ   R9, R8
	ORQ   R10, R8
	ORQ   R11, R8

topKEmit:
	BSFQ R8, R9
	MOVL R9, (DI)
	ADDQ $4, DI
	DECQ DX
	JZ   topKDone
	LEAQ -1(R8), R10
	ANDQ R10, R8
	JNZ  topKEmit
	JMP  topKRound

topKDone:
	MOVB $1, ok+32(FP)
	VZEROUPPER
	RET

topKRefuse:
	MOVB $0, ok+32(FP)
	VZEROUPPER
	RET
