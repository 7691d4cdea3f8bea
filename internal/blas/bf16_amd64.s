#include "textflag.h"

DATA bf16Round<>+0(SB)/4, $0x7fff
DATA bf16Round<>+4(SB)/4, $1
DATA bf16Round<>+8(SB)/4, $0x40
GLOBL bf16Round<>(SB), RODATA|NOPTR, $12

// func roundBF16x16(dst *uint16, src *float32, n int)
//
// dst[i] = bfloat16(src[i]) for n (a multiple of 16) floats, AVX-512 F:
// the upper half of u + 0x7fff + (bit 16 of u), u the float's bits, which
// rounds to nearest with ties to even (and overflows to Inf as it should);
// a NaN keeps its sign and upper bits with the quiet bit set instead, where
// that sum could carry it into another value. roundBF16's operations
// exactly, on sixteen lanes.
TEXT ·roundBF16x16(SB), NOSPLIT, $0-24
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	VPBROADCASTD bf16Round<>+0(SB), Z5
	VPBROADCASTD bf16Round<>+4(SB), Z6
	VPBROADCASTD bf16Round<>+8(SB), Z7
	XORQ         AX, AX

bf16Loop:
	CMPQ      AX, CX
	JGE       bf16Done
	VMOVDQU32 (SI)(AX*4), Z0
	VPSRLD    $16, Z0, Z1  // u >> 16
	VPANDD    Z6, Z1, Z2   // its lowest bit
	VPADDD    Z5, Z0, Z3   // u + 0x7fff
	VPADDD    Z2, Z3, Z3   // + that bit
	VPSRLD    $16, Z3, Z3
	VCMPPS    $3, Z0, Z0, K1 // NaN lanes
	VPORD     Z7, Z1, K1, Z3 // there: (u >> 16) | 0x40
	VPMOVDW   Z3, Y3
	VMOVDQU   Y3, (DI)(AX*2)
	ADDQ      $16, AX
	JMP       bf16Loop

bf16Done:
	VZEROUPPER
	RET
