// adamw_amd64.s: the AdamW update of package kernels (adamw.go) four elements at a time in AVX2 float64
// arithmetic, the same operations in the same order as the Go loop, so the results are the same bits:
//
//	m' = f32(b1·m + (1−b1)·g),  v' = f32(b2·v + ((1−b2)·g)·g)
//	val' = f32(val·decay − (stepSize·m') / (sqrt(v')/bc2 + eps))

#include "textflag.h"

// func AdamW(val, grad, m, v *float32, n int, c *[8]float64)
// c = {b1, 1−b1, b2, 1−b2, bc2, eps, stepSize, decay}; n a multiple of 4.
TEXT ·AdamW(SB), NOSPLIT, $0-48
	MOVQ         val+0(FP), DI
	MOVQ         grad+8(FP), SI
	MOVQ         m+16(FP), R8
	MOVQ         v+24(FP), R9
	MOVQ         n+32(FP), CX
	MOVQ         c+40(FP), AX
	VBROADCASTSD 0(AX), Y8   // b1
	VBROADCASTSD 8(AX), Y9   // 1−b1
	VBROADCASTSD 16(AX), Y10 // b2
	VBROADCASTSD 24(AX), Y11 // 1−b2
	VBROADCASTSD 32(AX), Y12 // bc2
	VBROADCASTSD 40(AX), Y13 // eps
	VBROADCASTSD 48(AX), Y14 // stepSize
	VBROADCASTSD 56(AX), Y15 // decay
	XORQ         BX, BX

adamw_loop:
	CMPQ       BX, CX
	JGE        adamw_done
	VCVTPS2PD  (SI)(BX*4), Y0 // g
	VCVTPS2PD  (R8)(BX*4), Y1 // m
	VMULPD     Y1, Y8, Y1     // b1·m
	VMULPD     Y0, Y9, Y2     // (1−b1)·g
	VADDPD     Y2, Y1, Y1
	VCVTPD2PSY Y1, X1         // m'
	VMOVUPS    X1, (R8)(BX*4)
	VCVTPS2PD  X1, Y1
	VCVTPS2PD  (R9)(BX*4), Y3 // v
	VMULPD     Y3, Y10, Y3    // b2·v
	VMULPD     Y0, Y11, Y4    // (1−b2)·g
	VMULPD     Y0, Y4, Y4     // ·g
	VADDPD     Y4, Y3, Y3
	VCVTPD2PSY Y3, X3         // v'
	VMOVUPS    X3, (R9)(BX*4)
	VCVTPS2PD  X3, Y3
	VSQRTPD    Y3, Y3
	VDIVPD     Y12, Y3, Y3    // sqrt(v')/bc2
	VADDPD     Y13, Y3, Y3    // + eps
	VCVTPS2PD  (DI)(BX*4), Y5
	VMULPD     Y15, Y5, Y5    // val·decay
	VMULPD     Y1, Y14, Y6    // stepSize·m'
	VDIVPD     Y3, Y6, Y6     // / denom
	VSUBPD     Y6, Y5, Y5
	VCVTPD2PSY Y5, X5
	VMOVUPS    X5, (DI)(BX*4)
	ADDQ       $4, BX
	JMP        adamw_loop

adamw_done:
	VZEROUPPER
	RET
