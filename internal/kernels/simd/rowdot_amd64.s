//go:build amd64

#include "textflag.h"

// rowdot_amd64.s: dot products of rows, c[i][j] = a_i·b_j, for the few-row products of batched decoding.
// Every output is one ymm accumulator summed over the k/8 chunks in order and reduced by HSUM, the same
// instruction sequence in every tile shape, so an output does not depend on the tile (or the rows) it is
// computed with. Each kernel prefetches the rows of b 8 ahead of those it reads: a weight matrix streamed from
// memory arrives a block of rows before it is needed rather than just in time (decode reads most weights once
// per step, from beyond L2).

// Every accumulator's 8 lanes reduce as ((l0+l4)+(l1+l5)) + ((l2+l6)+(l3+l7)). The accumulators of a tile
// reduce together, transposed into one register of results: FOLD adds the halves of two accumulators A and E
// side by side, D = [A.lo+A.hi | E.lo+E.hi] (T is scratch); REDUCE8 folds Y0..Y7 in pairs (Y0,Y4), (Y1,Y5),
// (Y2,Y6), (Y3,Y7) and two rounds of horizontal adds leave Y8 = [Σ Y0, Σ Y1, Σ Y2, Σ Y3 | Σ Y4, …, Σ Y7]: the
// same adds in the same order as reducing each accumulator alone, in 19 instructions for 8 outputs instead of 32.
#define FOLD(A, E, D, T) VPERM2F128 $0x20, E, A, D; VPERM2F128 $0x31, E, A, T; VADDPS T, D, D
#define REDUCE8 FOLD(Y0, Y4, Y8, Y9); FOLD(Y1, Y5, Y10, Y9); FOLD(Y2, Y6, Y11, Y9); FOLD(Y3, Y7, Y12, Y9); VHADDPS Y10, Y8, Y8; VHADDPS Y12, Y11, Y11; VHADDPS Y11, Y8, Y8

// func DotRows4x2(c *float32, ldc int, a *float32, lda int, b *float32, ldb int, n, k int, acc int)
TEXT ·DotRows4x2(SB), NOSPLIT, $0-72
	MOVQ c+0(FP), DI
	MOVQ ldc+8(FP), R8
	SHLQ $2, R8
	MOVQ a+16(FP), SI
	MOVQ lda+24(FP), R9
	SHLQ $2, R9
	LEAQ (SI)(R9*1), BX
	LEAQ (BX)(R9*1), R12
	LEAQ (R12)(R9*1), R13
	MOVQ b+32(FP), DX
	MOVQ ldb+40(FP), R10
	SHLQ $2, R10
	MOVQ k+56(FP), R11
	SHLQ $2, R11

d42_col:
	LEAQ   (DX)(R10*1), AX
	LEAQ   (DX)(R10*8), CX // the rows 8 ahead (two 4 KB pages when k = 256), prefetched meanwhile
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	XORQ   R9, R9

d42_k:
	PREFETCHT0  (CX)(R9*2)
	VMOVUPS     (DX)(R9*1), Y8
	VMOVUPS     (AX)(R9*1), Y9
	VMOVUPS     (SI)(R9*1), Y10
	VFMADD231PS Y8, Y10, Y0
	VFMADD231PS Y9, Y10, Y1
	VMOVUPS     (BX)(R9*1), Y11
	VFMADD231PS Y8, Y11, Y2
	VFMADD231PS Y9, Y11, Y3
	VMOVUPS     (R12)(R9*1), Y10
	VFMADD231PS Y8, Y10, Y4
	VFMADD231PS Y9, Y10, Y5
	VMOVUPS     (R13)(R9*1), Y11
	VFMADD231PS Y8, Y11, Y6
	VFMADD231PS Y9, Y11, Y7
	ADDQ        $32, R9
	CMPQ        R9, R11
	JLT         d42_k

	// Y0..Y7 are rows 0..3 × columns j, j+1: Y8 = [c0j c0j' c1j c1j' | c2j c2j' c3j c3j']
	REDUCE8
	VEXTRACTF128 $1, Y8, X9
	LEAQ         (DI)(R8*2), AX
	CMPQ         acc+64(FP), $0
	JEQ          d42_store
	VMOVSD       (DI), X10
	VMOVHPS      (DI)(R8*1), X10, X10
	VADDPS       X10, X8, X8
	VMOVSD       (AX), X11
	VMOVHPS      (AX)(R8*1), X11, X11
	VADDPS       X11, X9, X9

d42_store:
	VMOVLPS X8, (DI)
	VMOVHPS X8, (DI)(R8*1)
	VMOVLPS X9, (AX)
	VMOVHPS X9, (AX)(R8*1)
	ADDQ   $8, DI
	LEAQ   (DX)(R10*2), DX
	SUBQ   $2, n+48(FP)
	JNE    d42_col
	VZEROUPPER
	RET

// func DotRows1x4(c *float32, a *float32, b *float32, ldb int, n, k int, acc int)
TEXT ·DotRows1x4(SB), NOSPLIT, $0-56
	MOVQ c+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ ldb+24(FP), R10
	SHLQ $2, R10
	MOVQ n+32(FP), CX
	MOVQ k+40(FP), R11
	SHLQ $2, R11

d14_col:
	LEAQ   (DX)(R10*1), AX
	LEAQ   (AX)(R10*1), BX
	LEAQ   (BX)(R10*1), R12
	LEAQ   (DX)(R10*8), R13 // the rows 8 ahead (two 4 KB pages when k = 256), prefetched meanwhile
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	XORQ   R9, R9

d14_k:
	PREFETCHT0  (R13)(R9*4)
	PREFETCHT0  64(R13)(R9*4)
	VMOVUPS     (SI)(R9*1), Y10
	VFMADD231PS (DX)(R9*1), Y10, Y0
	VFMADD231PS (AX)(R9*1), Y10, Y1
	VFMADD231PS (BX)(R9*1), Y10, Y2
	VFMADD231PS (R12)(R9*1), Y10, Y3
	ADDQ        $32, R9
	CMPQ        R9, R11
	JLT         d14_k

	// Y0..Y3 are columns j..j+3, folded in pairs (Y0,Y2), (Y1,Y3): X8 = [c_j c_j+1 c_j+2 c_j+3]
	FOLD(Y0, Y2, Y8, Y9)
	FOLD(Y1, Y3, Y10, Y9)
	VHADDPS      Y10, Y8, Y8
	VHADDPS      Y8, Y8, Y8
	VEXTRACTF128 $1, Y8, X9
	VUNPCKLPD    X9, X8, X8
	CMPQ         acc+48(FP), $0
	JEQ          d14_store
	VADDPS       (DI), X8, X8

d14_store:
	VMOVUPS X8, (DI)
	ADDQ   $16, DI
	LEAQ   (DX)(R10*4), DX
	SUBQ   $4, CX
	JNE    d14_col
	VZEROUPPER
	RET

// func DotRows2x4(c *float32, ldc int, a *float32, lda int, b *float32, ldb int, n, k int, acc int)
TEXT ·DotRows2x4(SB), NOSPLIT, $0-72
	MOVQ c+0(FP), DI
	MOVQ ldc+8(FP), R8
	SHLQ $2, R8
	MOVQ a+16(FP), SI
	MOVQ lda+24(FP), R9
	SHLQ $2, R9
	LEAQ (SI)(R9*1), BX
	MOVQ b+32(FP), DX
	MOVQ ldb+40(FP), R10
	SHLQ $2, R10
	MOVQ k+56(FP), R11
	SHLQ $2, R11

d24_col:
	LEAQ   (DX)(R10*1), AX
	LEAQ   (AX)(R10*1), R12
	LEAQ   (R12)(R10*1), R13
	LEAQ   (DX)(R10*8), CX // the rows 8 ahead (two 4 KB pages when k = 256), prefetched meanwhile
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	XORQ   R9, R9

d24_k:
	PREFETCHT0  (CX)(R9*4)
	PREFETCHT0  64(CX)(R9*4)
	VMOVUPS     (SI)(R9*1), Y12
	VMOVUPS     (BX)(R9*1), Y13
	VMOVUPS     (DX)(R9*1), Y8
	VFMADD231PS Y8, Y12, Y0
	VFMADD231PS Y8, Y13, Y4
	VMOVUPS     (AX)(R9*1), Y9
	VFMADD231PS Y9, Y12, Y1
	VFMADD231PS Y9, Y13, Y5
	VMOVUPS     (R12)(R9*1), Y10
	VFMADD231PS Y10, Y12, Y2
	VFMADD231PS Y10, Y13, Y6
	VMOVUPS     (R13)(R9*1), Y11
	VFMADD231PS Y11, Y12, Y3
	VFMADD231PS Y11, Y13, Y7
	ADDQ        $32, R9
	CMPQ        R9, R11
	JLT         d24_k

	// Y0..Y3 are row 0 × columns j..j+3, Y4..Y7 row 1: Y8 = [c0j … c0j+3 | c1j … c1j+3]
	REDUCE8
	VEXTRACTF128 $1, Y8, X9
	CMPQ         acc+64(FP), $0
	JEQ          d24_store
	VADDPS       (DI), X8, X8
	VADDPS       (DI)(R8*1), X9, X9

d24_store:
	VMOVUPS X8, (DI)
	VMOVUPS X9, (DI)(R8*1)
	ADDQ   $16, DI
	LEAQ   (DX)(R10*4), DX
	SUBQ   $4, n+48(FP)
	JNE    d24_col
	VZEROUPPER
	RET
