//go:build amd64

#include "textflag.h"

// rowdot_amd64.s: dot products of rows, c[i][j] = a_i·b_j, for the few-row products of batched decoding.
// Every output is one ymm accumulator summed over the k/8 chunks in order and reduced by HSUM, the same
// instruction sequence in every tile shape, so an output does not depend on the tile (or the rows) it is
// computed with. Each kernel prefetches the rows of b 8 ahead of those it reads: a weight matrix streamed from
// memory arrives a block of rows before it is needed rather than just in time (decode reads most weights once
// per step, from beyond L2).

// HSUM reduces the 8 lanes of Y into the low lane of X (the low half of Y): (l0+l4)+(l1+l5) + (l2+l6)+(l3+l7).
#define HSUM(Y, X) VEXTRACTF128 $1, Y, X15; VADDPS X15, X, X; VHADDPS X, X, X; VHADDPS X, X, X

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

	HSUM(Y0, X0)
	HSUM(Y1, X1)
	HSUM(Y2, X2)
	HSUM(Y3, X3)
	HSUM(Y4, X4)
	HSUM(Y5, X5)
	HSUM(Y6, X6)
	HSUM(Y7, X7)
	LEAQ (DI)(R8*2), AX
	CMPQ acc+64(FP), $0
	JEQ  d42_store
	VADDSS (DI), X0, X0
	VADDSS 4(DI), X1, X1
	VADDSS (DI)(R8*1), X2, X2
	VADDSS 4(DI)(R8*1), X3, X3
	VADDSS (AX), X4, X4
	VADDSS 4(AX), X5, X5
	VADDSS (AX)(R8*1), X6, X6
	VADDSS 4(AX)(R8*1), X7, X7

d42_store:
	VMOVSS X0, (DI)
	VMOVSS X1, 4(DI)
	VMOVSS X2, (DI)(R8*1)
	VMOVSS X3, 4(DI)(R8*1)
	VMOVSS X4, (AX)
	VMOVSS X5, 4(AX)
	VMOVSS X6, (AX)(R8*1)
	VMOVSS X7, 4(AX)(R8*1)
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

	HSUM(Y0, X0)
	HSUM(Y1, X1)
	HSUM(Y2, X2)
	HSUM(Y3, X3)
	CMPQ acc+48(FP), $0
	JEQ  d14_store
	VADDSS (DI), X0, X0
	VADDSS 4(DI), X1, X1
	VADDSS 8(DI), X2, X2
	VADDSS 12(DI), X3, X3

d14_store:
	VMOVSS X0, (DI)
	VMOVSS X1, 4(DI)
	VMOVSS X2, 8(DI)
	VMOVSS X3, 12(DI)
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

	HSUM(Y0, X0)
	HSUM(Y1, X1)
	HSUM(Y2, X2)
	HSUM(Y3, X3)
	HSUM(Y4, X4)
	HSUM(Y5, X5)
	HSUM(Y6, X6)
	HSUM(Y7, X7)
	CMPQ acc+64(FP), $0
	JEQ  d24_store
	VADDSS (DI), X0, X0
	VADDSS 4(DI), X1, X1
	VADDSS 8(DI), X2, X2
	VADDSS 12(DI), X3, X3
	VADDSS (DI)(R8*1), X4, X4
	VADDSS 4(DI)(R8*1), X5, X5
	VADDSS 8(DI)(R8*1), X6, X6
	VADDSS 12(DI)(R8*1), X7, X7

d24_store:
	VMOVSS X0, (DI)
	VMOVSS X1, 4(DI)
	VMOVSS X2, 8(DI)
	VMOVSS X3, 12(DI)
	VMOVSS X4, (DI)(R8*1)
	VMOVSS X5, 4(DI)(R8*1)
	VMOVSS X6, 8(DI)(R8*1)
	VMOVSS X7, 12(DI)(R8*1)
	ADDQ   $16, DI
	LEAQ   (DX)(R10*4), DX
	SUBQ   $4, n+48(FP)
	JNE    d24_col
	VZEROUPPER
	RET
