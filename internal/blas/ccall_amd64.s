//go:build linux || freebsd

#include "textflag.h"
#include "go_asm.h"

// callOnStack(tramp uintptr, arg unsafe.Pointer, top uintptr) calls the
// trampoline tramp with arg in DI and the stack pointer at top, a C
// stack's 16-byte aligned top, and puts the goroutine's stack pointer back
// after (callC, ccall_amd64.go). The trampolines' frames keep the
// alignment, as they do under cgocall.
TEXT ·callOnStack(SB), NOSPLIT, $0-24
	MOVQ tramp+0(FP), AX
	MOVQ arg+8(FP), DI
	MOVQ top+16(FP), BX
	MOVQ SP, R12 // callee-saved in C, and the trampolines leave it alone
	MOVQ BX, SP
	CALL AX
	MOVQ R12, SP
	RET

// fortranTrampoline(DI = *cCall13) calls fn(args[0], ..., args[12]) with
// the System V calling convention: the first six in DI, SI, DX, CX, R8,
// R9, the other seven on the stack. Entered with the stack 16-byte aligned
// at the call into it, its 64-byte frame (plus the saved BP and the return
// address) keeps it aligned at the call out.
GLOBL ·fortranTrampolineABI0(SB), NOPTR|RODATA, $8
DATA ·fortranTrampolineABI0(SB)/8, $·fortranTrampoline(SB)

TEXT ·fortranTrampoline(SB), NOSPLIT, $64-0
	MOVQ DI, R11
	MOVQ (cCall13_args+48)(R11), R10
	MOVQ R10, 0(SP)
	MOVQ (cCall13_args+56)(R11), R10
	MOVQ R10, 8(SP)
	MOVQ (cCall13_args+64)(R11), R10
	MOVQ R10, 16(SP)
	MOVQ (cCall13_args+72)(R11), R10
	MOVQ R10, 24(SP)
	MOVQ (cCall13_args+80)(R11), R10
	MOVQ R10, 32(SP)
	MOVQ (cCall13_args+88)(R11), R10
	MOVQ R10, 40(SP)
	MOVQ (cCall13_args+96)(R11), R10
	MOVQ R10, 48(SP)
	MOVQ (cCall13_args+0)(R11), DI
	MOVQ (cCall13_args+8)(R11), SI
	MOVQ (cCall13_args+16)(R11), DX
	MOVQ (cCall13_args+24)(R11), CX
	MOVQ (cCall13_args+32)(R11), R8
	MOVQ (cCall13_args+40)(R11), R9
	MOVQ cCall13_fn(R11), R10
	XORL AX, AX // no vector registers carry arguments
	CALL R10
	RET
