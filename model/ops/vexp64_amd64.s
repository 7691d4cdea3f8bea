//go:build !purego

#include "textflag.h"

// func exp64x4(x *float64, n int)
//
// x[i] = math.Exp(x[i]) for n values (a multiple of 4), four lanes at a
// time, for x in [-700, 700]: the operations of the Go runtime's
// math.archExp (src/math/exp_amd64.s) on its fused multiply-add path, in
// the same order, so each lane gets math.Exp's bits on a CPU with FMA
// (the only kind that calls this). In that range the exponent needs
// neither the overflow nor the denormal branch of archExp. Constants:
// exp64Table rows (float64 bits) 0 log2e, 1 ln2U, 2 ln2L, 3 0.0625,
// 4..11 the Taylor coefficients 1/8! .. 1/2!, 1, 12 2.0, 13 int 1023.
TEXT ·exp64x4(SB), NOSPLIT, $0-16
	MOVQ x+0(FP), DI
	MOVQ n+8(FP), CX
	LEAQ ·exp64Table(SB), R8
	VBROADCASTSD 0(R8), Y15  // log2e
	VBROADCASTSD 8(R8), Y14  // ln2U
	VBROADCASTSD 16(R8), Y13 // ln2L
	VBROADCASTSD 24(R8), Y12 // 0.0625
	VBROADCASTSD 96(R8), Y11 // 2.0
	VPBROADCASTQ 104(R8), Y10 // 1023
	SHRQ $2, CX
	JZ done

loop:
	VMOVUPD (DI), Y0
	VMULPD Y15, Y0, Y1          // x·log2e
	VCVTPD2DQY Y1, X2           // exponent, rounded to nearest
	VCVTDQ2PD X2, Y1
	VFNMADD231PD Y14, Y1, Y0    // x −= e·ln2U (fused)
	VFNMADD231PD Y13, Y1, Y0    // x −= e·ln2L (fused)
	VMULPD Y12, Y0, Y0          // reduce: x/16
	VBROADCASTSD 32(R8), Y3     // 1/8!
	VBROADCASTSD 40(R8), Y4
	VFMADD213PD Y4, Y0, Y3      // p = p·x + c
	VBROADCASTSD 48(R8), Y4
	VFMADD213PD Y4, Y0, Y3
	VBROADCASTSD 56(R8), Y4
	VFMADD213PD Y4, Y0, Y3
	VBROADCASTSD 64(R8), Y4
	VFMADD213PD Y4, Y0, Y3
	VBROADCASTSD 72(R8), Y4
	VFMADD213PD Y4, Y0, Y3
	VBROADCASTSD 80(R8), Y4     // 1/2!
	VFMADD213PD Y4, Y0, Y3
	VBROADCASTSD 88(R8), Y4     // 1
	VFMADD213PD Y4, Y0, Y3
	VMULPD Y3, Y0, Y0           // x = x·p
	VADDPD Y11, Y0, Y3          // four squarings: x = x·(x + 2) ...
	VMULPD Y3, Y0, Y0
	VADDPD Y11, Y0, Y3
	VMULPD Y3, Y0, Y0
	VADDPD Y11, Y0, Y3
	VMULPD Y3, Y0, Y0
	VADDPD Y11, Y0, Y3
	VBROADCASTSD 88(R8), Y4
	VFMADD213PD Y4, Y3, Y0      // ... the last fused with + 1
	VPMOVSXDQ X2, Y5            // 2^e: (e + 1023) << 52
	VPADDQ Y10, Y5, Y5
	VPSLLQ $52, Y5, Y5
	VMULPD Y5, Y0, Y0
	VMOVUPD Y0, (DI)
	ADDQ $32, DI
	DECQ CX
	JNZ loop

done:
	VZEROUPPER
	RET
