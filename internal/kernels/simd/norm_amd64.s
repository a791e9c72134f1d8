//go:build amd64

#include "textflag.h"

// norm_amd64.s: the elementwise passes of RMSNorm and its backward (package kernels' norm.go), Dot's four
// accumulators (blas.go) and the softmax gradient row (softmax.go), AVX2, each product and sum rounded
// separately (no FMA) in the order of those Go loops, so they give their bits. n is a multiple of 8 (of 4
// for DotMul4 and DotLanes4).

// func ScaleMul(y, x, gw *float32, n int, rs float32)
// y[i] = (x[i]·rs)·gw[i].
TEXT ·ScaleMul(SB), NOSPLIT, $0-36
	MOVQ         y+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         gw+16(FP), DX
	MOVQ         n+24(FP), CX
	VBROADCASTSS rs+32(FP), Y1

sm_8:
	CMPQ    CX, $8
	JLT     sm_done
	VMULPS  (SI), Y1, Y0
	VMULPS  (DX), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, DI
	ADDQ    $32, SI
	ADDQ    $32, DX
	SUBQ    $8, CX
	JMP     sm_8

sm_done:
	VZEROUPPER
	RET

// func DotMul4(a, b, c *float32, n int) float32
// Σ (a[i]·b[i])·c[i] accumulated in four lanes (lane l the elements i ≡ l mod 4, in order) and returned as
// (s0+s1)+(s2+s3).
TEXT ·DotMul4(SB), NOSPLIT, $0-36
	MOVQ   a+0(FP), DI
	MOVQ   b+8(FP), SI
	MOVQ   c+16(FP), DX
	MOVQ   n+24(FP), CX
	VXORPS X0, X0, X0

dm_4:
	CMPQ    CX, $4
	JLT     dm_done
	VMOVUPS (DI), X1
	VMULPS  (SI), X1, X1
	VMULPS  (DX), X1, X1
	VADDPS  X1, X0, X0
	ADDQ    $16, DI
	ADDQ    $16, SI
	ADDQ    $16, DX
	SUBQ    $4, CX
	JMP     dm_4

dm_done:
	// (s0+s1)+(s2+s3)
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VMOVSS  X0, ret+32(FP)
	RET

// func RMSNormDx(dx, gw, dy, x *float32, n int, rs, c float32)
// dx[i] += ((rs·gw[i])·dy[i]) − c·x[i].
TEXT ·RMSNormDx(SB), NOSPLIT, $0-48
	MOVQ         dx+0(FP), DI
	MOVQ         gw+8(FP), SI
	MOVQ         dy+16(FP), DX
	MOVQ         x+24(FP), R8
	MOVQ         n+32(FP), CX
	VBROADCASTSS rs+40(FP), Y4
	VBROADCASTSS c+44(FP), Y5

nd_8:
	CMPQ    CX, $8
	JLT     nd_done
	VMULPS  (SI), Y4, Y0
	VMULPS  (DX), Y0, Y0
	VMULPS  (R8), Y5, Y1
	VSUBPS  Y1, Y0, Y0
	VADDPS  (DI), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, DI
	ADDQ    $32, SI
	ADDQ    $32, DX
	ADDQ    $32, R8
	SUBQ    $8, CX
	JMP     nd_8

nd_done:
	VZEROUPPER
	RET

// func MulMulAcc(acc, d, x *float32, n int, rs float32)
// acc[i] += (d[i]·x[i])·rs.
TEXT ·MulMulAcc(SB), NOSPLIT, $0-36
	MOVQ         acc+0(FP), DI
	MOVQ         d+8(FP), SI
	MOVQ         x+16(FP), DX
	MOVQ         n+24(FP), CX
	VBROADCASTSS rs+32(FP), Y1

mm_8:
	CMPQ    CX, $8
	JLT     mm_done
	VMOVUPS (SI), Y0
	VMULPS  (DX), Y0, Y0
	VMULPS  Y1, Y0, Y0
	VADDPS  (DI), Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, DI
	ADDQ    $32, SI
	ADDQ    $32, DX
	SUBQ    $8, CX
	JMP     mm_8

mm_done:
	VZEROUPPER
	RET

// func DotLanes4(a, b *float32, n int, lanes *[4]float32)
// lanes[l] = Σ a[i]·b[i] over i ≡ l (mod 4), i < n, each lane in order from 0, product and sum rounded
// separately.
TEXT ·DotLanes4(SB), NOSPLIT, $0-32
	MOVQ   a+0(FP), DI
	MOVQ   b+8(FP), SI
	MOVQ   n+16(FP), CX
	MOVQ   lanes+24(FP), DX
	VXORPS X0, X0, X0

dl_4:
	CMPQ    CX, $4
	JLT     dl_done
	VMOVUPS (DI), X1
	VMULPS  (SI), X1, X1
	VADDPS  X1, X0, X0
	ADDQ    $16, DI
	ADDQ    $16, SI
	SUBQ    $4, CX
	JMP     dl_4

dl_done:
	VMOVUPS X0, (DX)
	RET

// func SoftmaxGrad(d, p *float32, n int, s, scale float32)
// d[i] = (p[i]·(d[i] − s))·scale.
TEXT ·SoftmaxGrad(SB), NOSPLIT, $0-32
	MOVQ         d+0(FP), DI
	MOVQ         p+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS s+24(FP), Y4
	VBROADCASTSS scale+28(FP), Y5

sg8:
	CMPQ    CX, $8
	JLT     sgdone
	VMOVUPS (DI), Y0
	VSUBPS  Y4, Y0, Y0
	VMULPS  (SI), Y0, Y0
	VMULPS  Y5, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, DI
	ADDQ    $32, SI
	SUBQ    $8, CX
	JMP     sg8

sgdone:
	VZEROUPPER
	RET
