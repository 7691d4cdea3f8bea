// Row walks of SwiGLU's elementwise steps (vec_amd64.s, vexp_amd64.s),
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
