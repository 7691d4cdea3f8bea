//go:build linux || freebsd

#include "textflag.h"
#include "go_asm.h"

// dnnlTrampoline(DI = *dnnlArgs) calls
//
//	status = fn(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
//
// with the System V calling convention: transA..a in DI, SI, DX, CX, R8,
// R9, alpha and beta in X0 and X1, lda..ldc on the stack. It is entered
// from callC (callOnStack or runtime.cgocall) on a C stack, 16-byte
// aligned at the call into it; the 48-byte frame (plus the saved BP and
// the return address) keeps it aligned at the call out.
GLOBL ·dnnlTrampolineABI0(SB), NOPTR|RODATA, $8
DATA ·dnnlTrampolineABI0(SB)/8, $·dnnlTrampoline(SB)

TEXT ·dnnlTrampoline(SB), NOSPLIT, $48-0
	MOVQ DI, 40(SP) // keep the block for the status
	MOVQ DI, R11

	MOVQ dnnlArgs_lda(R11), R10
	MOVQ R10, 0(SP)
	MOVQ dnnlArgs_b(R11), R10
	MOVQ R10, 8(SP)
	MOVQ dnnlArgs_ldb(R11), R10
	MOVQ R10, 16(SP)
	MOVQ dnnlArgs_c(R11), R10
	MOVQ R10, 24(SP)
	MOVQ dnnlArgs_ldc(R11), R10
	MOVQ R10, 32(SP)

	MOVSS dnnlArgs_alpha(R11), X0
	MOVSS dnnlArgs_beta(R11), X1
	MOVQ  dnnlArgs_transA(R11), DI
	MOVQ  dnnlArgs_transB(R11), SI
	MOVQ  dnnlArgs_m(R11), DX
	MOVQ  dnnlArgs_n(R11), CX
	MOVQ  dnnlArgs_k(R11), R8
	MOVQ  dnnlArgs_a(R11), R9
	MOVQ  dnnlArgs_fn(R11), R10
	MOVL  $2, AX // vector registers used: what a variadic callee would read
	CALL  R10

	MOVQ 40(SP), R11
	MOVL AX, dnnlArgs_status(R11)
	RET
