// The one function of the Go benchmarks that Go cannot express: reading the time-stamp counter.
// Under QEMU's `-icount shift=0` the counter advances by one per executed instruction.

#include "textflag.h"

// func rdtsc() uint64
// RDTSC leaves the counter's low half in AX and its high half in DX; the result is DX:AX.
TEXT ·rdtsc(SB), NOSPLIT, $0-8
	RDTSC
	SHLQ	$32, DX
	ORQ	DX, AX
	MOVQ	AX, ret+0(FP)
	RET
