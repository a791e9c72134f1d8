// gather_amd64.s: AVX2+FMA float32 kernels behind kernels/gather.go (package simd). Row widths are multiples
// of 8; every selected row has been bounds-checked by the Go caller, and m ≥ 1.

#include "textflag.h"

// func GatherDot(out, x *float32, n int, base *float32, stride int, idx *int32, m int, alpha float32)
TEXT ·GatherDot(SB), NOSPLIT, $0-60
	MOVQ   out+0(FP), DI
	MOVQ   x+8(FP), SI
	MOVQ   n+16(FP), CX
	MOVQ   base+24(FP), DX
	MOVQ   stride+32(FP), R8
	SHLQ   $2, R8
	MOVQ   idx+40(FP), R9
	MOVQ   m+48(FP), R10
	VMOVSS alpha+56(FP), X15

gd_row:
	MOVLQSX (R9), AX
	IMULQ   R8, AX
	ADDQ    DX, AX
	MOVQ    SI, BX
	MOVQ    CX, R11
	VXORPS  Y0, Y0, Y0
	VXORPS  Y1, Y1, Y1
	VXORPS  Y2, Y2, Y2
	VXORPS  Y3, Y3, Y3

gd_32:
	CMPQ        R11, $32
	JLT         gd_8
	VMOVUPS     (BX), Y4
	VMOVUPS     32(BX), Y5
	VMOVUPS     64(BX), Y6
	VMOVUPS     96(BX), Y7
	VFMADD231PS (AX), Y4, Y0
	VFMADD231PS 32(AX), Y5, Y1
	VFMADD231PS 64(AX), Y6, Y2
	VFMADD231PS 96(AX), Y7, Y3
	ADDQ        $128, BX
	ADDQ        $128, AX
	SUBQ        $32, R11
	JMP         gd_32

gd_8:
	TESTQ       R11, R11
	JEQ         gd_sum
	VMOVUPS     (BX), Y4
	VFMADD231PS (AX), Y4, Y0
	ADDQ        $32, BX
	ADDQ        $32, AX
	SUBQ        $8, R11
	JMP         gd_8

gd_sum:
	VADDPS       Y1, Y0, Y0
	VADDPS       Y3, Y2, Y2
	VADDPS       Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	VMULSS       X15, X0, X0
	VMOVSS       X0, (DI)
	ADDQ         $4, DI
	ADDQ         $4, R9
	DECQ         R10
	JNE          gd_row
	VZEROUPPER
	RET

// func GatherAxpy(y *float32, n int, a, base *float32, stride int, idx *int32, m int)
TEXT ·GatherAxpy(SB), NOSPLIT, $0-56
	MOVQ y+0(FP), DI
	MOVQ n+8(FP), CX
	MOVQ base+24(FP), DX
	MOVQ stride+32(FP), R8
	SHLQ $2, R8

ga_chunk32:
	CMPQ    CX, $32
	JLT     ga_chunk8
	VMOVUPS (DI), Y0
	VMOVUPS 32(DI), Y1
	VMOVUPS 64(DI), Y2
	VMOVUPS 96(DI), Y3
	MOVQ    a+16(FP), SI
	MOVQ    idx+40(FP), R9
	MOVQ    m+48(FP), R10

ga_row32:
	MOVLQSX      (R9), AX
	IMULQ        R8, AX
	ADDQ         DX, AX
	VBROADCASTSS (SI), Y4
	VFMADD231PS  (AX), Y4, Y0
	VFMADD231PS  32(AX), Y4, Y1
	VFMADD231PS  64(AX), Y4, Y2
	VFMADD231PS  96(AX), Y4, Y3
	ADDQ         $4, SI
	ADDQ         $4, R9
	DECQ         R10
	JNE          ga_row32
	VMOVUPS      Y0, (DI)
	VMOVUPS      Y1, 32(DI)
	VMOVUPS      Y2, 64(DI)
	VMOVUPS      Y3, 96(DI)
	ADDQ         $128, DI
	ADDQ         $128, DX
	SUBQ         $32, CX
	JMP          ga_chunk32

ga_chunk8:
	TESTQ   CX, CX
	JEQ     ga_done
	VMOVUPS (DI), Y0
	MOVQ    a+16(FP), SI
	MOVQ    idx+40(FP), R9
	MOVQ    m+48(FP), R10

ga_row8:
	MOVLQSX      (R9), AX
	IMULQ        R8, AX
	ADDQ         DX, AX
	VBROADCASTSS (SI), Y4
	VFMADD231PS  (AX), Y4, Y0
	ADDQ         $4, SI
	ADDQ         $4, R9
	DECQ         R10
	JNE          ga_row8
	VMOVUPS      Y0, (DI)
	ADDQ         $32, DI
	ADDQ         $32, DX
	SUBQ         $8, CX
	JMP          ga_chunk8

ga_done:
	VZEROUPPER
	RET

// func ScatterAxpy(base *float32, stride int, idx *int32, a *float32, m int, x *float32, n int)
TEXT ·ScatterAxpy(SB), NOSPLIT, $0-56
	MOVQ base+0(FP), DX
	MOVQ stride+8(FP), R8
	SHLQ $2, R8
	MOVQ idx+16(FP), R9
	MOVQ a+24(FP), SI
	MOVQ m+32(FP), R10
	MOVQ x+40(FP), R12
	MOVQ n+48(FP), R13

sa_row:
	MOVLQSX      (R9), AX
	IMULQ        R8, AX
	ADDQ         DX, AX
	VBROADCASTSS (SI), Y4
	MOVQ         R12, BX
	MOVQ         R13, CX

sa_32:
	CMPQ        CX, $32
	JLT         sa_8
	VMOVUPS     (AX), Y0
	VMOVUPS     32(AX), Y1
	VMOVUPS     64(AX), Y2
	VMOVUPS     96(AX), Y3
	VFMADD231PS (BX), Y4, Y0
	VFMADD231PS 32(BX), Y4, Y1
	VFMADD231PS 64(BX), Y4, Y2
	VFMADD231PS 96(BX), Y4, Y3
	VMOVUPS     Y0, (AX)
	VMOVUPS     Y1, 32(AX)
	VMOVUPS     Y2, 64(AX)
	VMOVUPS     Y3, 96(AX)
	ADDQ        $128, AX
	ADDQ        $128, BX
	SUBQ        $32, CX
	JMP         sa_32

sa_8:
	TESTQ       CX, CX
	JEQ         sa_next
	VMOVUPS     (AX), Y0
	VFMADD231PS (BX), Y4, Y0
	VMOVUPS     Y0, (AX)
	ADDQ        $32, AX
	ADDQ        $32, BX
	SUBQ        $8, CX
	JMP         sa_8

sa_next:
	ADDQ $4, SI
	ADDQ $4, R9
	DECQ R10
	JNE  sa_row
	VZEROUPPER
	RET

// func ReluScale(y, x *float32, n int, a float32)
TEXT ·ReluScale(SB), NOSPLIT, $0-28
	MOVQ         y+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS a+24(FP), Y15
	VXORPS       Y14, Y14, Y14

rs_8:
	CMPQ    CX, $8
	JLT     rs_done
	VMAXPS  (SI), Y14, Y0
	VMULPS  Y15, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	SUBQ    $8, CX
	JMP     rs_8

rs_done:
	VZEROUPPER
	RET

// func ReluAxpy(y, x *float32, n int, a float32)
TEXT ·ReluAxpy(SB), NOSPLIT, $0-28
	MOVQ         y+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS a+24(FP), Y15
	VXORPS       Y14, Y14, Y14

ra_32:
	CMPQ        CX, $32
	JLT         ra_8
	VMAXPS      (SI), Y14, Y0
	VMAXPS      32(SI), Y14, Y1
	VMAXPS      64(SI), Y14, Y2
	VMAXPS      96(SI), Y14, Y3
	VFMADD213PS (DI), Y15, Y0
	VFMADD213PS 32(DI), Y15, Y1
	VFMADD213PS 64(DI), Y15, Y2
	VFMADD213PS 96(DI), Y15, Y3
	VMOVUPS     Y0, (DI)
	VMOVUPS     Y1, 32(DI)
	VMOVUPS     Y2, 64(DI)
	VMOVUPS     Y3, 96(DI)
	ADDQ        $128, SI
	ADDQ        $128, DI
	SUBQ        $32, CX
	JMP         ra_32

ra_8:
	CMPQ        CX, $8
	JLT         ra_done
	VMAXPS      (SI), Y14, Y0
	VFMADD213PS (DI), Y15, Y0
	VMOVUPS     Y0, (DI)
	ADDQ        $32, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	JMP         ra_8

ra_done:
	VZEROUPPER
	RET

// func ReluBackward(dst, grad *float32, n int, w float32) float32
TEXT ·ReluBackward(SB), NOSPLIT, $0-36
	MOVQ         dst+0(FP), DI
	MOVQ         grad+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS w+24(FP), Y15
	VXORPS       Y14, Y14, Y14
	VXORPS       Y13, Y13, Y13

rb_8:
	CMPQ        CX, $8
	JLT         rb_sum
	VMOVUPS     (DI), Y0
	VMOVUPS     (SI), Y1
	VCMPPS      $0x1e, Y14, Y0, Y2
	VMAXPS      Y14, Y0, Y3
	VFMADD231PS Y3, Y1, Y13
	VMULPS      Y15, Y1, Y1
	VANDPS      Y2, Y1, Y1
	VMOVUPS     Y1, (DI)
	ADDQ        $32, SI
	ADDQ        $32, DI
	SUBQ        $8, CX
	JMP         rb_8

rb_sum:
	VEXTRACTF128 $1, Y13, X1
	VADDPS       X1, X13, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	VMOVSS       X0, ret+32(FP)
	VZEROUPPER
	RET

// Constants of ExpSub: 8 × 1.0f at 0, 8 × int32 127 at 32.
DATA expc<>+0(SB)/4, $0x3f800000
DATA expc<>+4(SB)/4, $0x3f800000
DATA expc<>+8(SB)/4, $0x3f800000
DATA expc<>+12(SB)/4, $0x3f800000
DATA expc<>+16(SB)/4, $0x3f800000
DATA expc<>+20(SB)/4, $0x3f800000
DATA expc<>+24(SB)/4, $0x3f800000
DATA expc<>+28(SB)/4, $0x3f800000
DATA expc<>+32(SB)/4, $0x0000007f
DATA expc<>+36(SB)/4, $0x0000007f
DATA expc<>+40(SB)/4, $0x0000007f
DATA expc<>+44(SB)/4, $0x0000007f
DATA expc<>+48(SB)/4, $0x0000007f
DATA expc<>+52(SB)/4, $0x0000007f
DATA expc<>+56(SB)/4, $0x0000007f
DATA expc<>+60(SB)/4, $0x0000007f
GLOBL expc<>(SB), RODATA|NOPTR, $64

#define BCAST(v, reg) MOVL v, AX; VMOVD AX, X0; VBROADCASTSS X0, reg

// func ExpSub(x *float32, n int, m float32) float32
// x[i] = exp(x[i] − m) (Cephes expf: range reduction by ln 2, degree-5 polynomial; arguments below −87 give 0),
// returning the sum. n is a multiple of 8.
TEXT ·ExpSub(SB), NOSPLIT, $0-28
	MOVQ         x+0(FP), DI
	MOVQ         n+8(FP), CX
	VBROADCASTSS m+16(FP), Y15
	BCAST($0x3fb8aa3b, Y14)
	BCAST($0x3f318000, Y13)
	BCAST($0xb95e8083, Y12)
	BCAST($0xc2ae0000, Y11)
	BCAST($0x39506967, Y4)
	BCAST($0x3ab743ce, Y5)
	BCAST($0x3c088908, Y6)
	BCAST($0x3d2aa9c1, Y7)
	BCAST($0x3e2aaaaa, Y8)
	BCAST($0x3f000000, Y9)
	VXORPS       Y10, Y10, Y10

ex_8:
	CMPQ         CX, $8
	JLT          ex_sum
	VMOVUPS      (DI), Y0
	VSUBPS       Y15, Y0, Y0
	VCMPPS       $0x1d, Y11, Y0, Y3
	VMAXPS       Y11, Y0, Y0
	VMULPS       Y14, Y0, Y1
	VROUNDPS     $0, Y1, Y1
	VFNMADD231PS Y13, Y1, Y0
	VFNMADD231PS Y12, Y1, Y0
	VMOVAPS      Y4, Y2
	VFMADD213PS  Y5, Y0, Y2
	VFMADD213PS  Y6, Y0, Y2
	VFMADD213PS  Y7, Y0, Y2
	VFMADD213PS  Y8, Y0, Y2
	VFMADD213PS  Y9, Y0, Y2
	VMULPS       Y0, Y2, Y2
	VFMADD213PS  Y0, Y0, Y2
	VADDPS       expc<>+0(SB), Y2, Y2
	VCVTPS2DQ    Y1, Y1
	VPADDD       expc<>+32(SB), Y1, Y1
	VPSLLD       $23, Y1, Y1
	VMULPS       Y1, Y2, Y2
	VANDPS       Y3, Y2, Y2
	VMOVUPS      Y2, (DI)
	VADDPS       Y2, Y10, Y10
	ADDQ         $32, DI
	SUBQ         $8, CX
	JMP          ex_8

ex_sum:
	VEXTRACTF128 $1, Y10, X1
	VADDPS       X1, X10, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	VMOVSS       X0, ret+24(FP)
	VZEROUPPER
	RET

// func GatherDotHeads(out *float32, ldob int, x *float32, n, hg int, base *float32, stride int, idx *int32, m int, alpha float32)
// out[h·ldo + i] = alpha · x[h·n : (h+1)·n] · row_i[h·n : (h+1)·n] for h < hg, i < m (ldob = ldo in bytes).
TEXT ·GatherDotHeads(SB), NOSPLIT, $0-76
	MOVQ   out+0(FP), DI
	MOVQ   x+16(FP), SI
	MOVQ   n+24(FP), CX
	MOVQ   base+40(FP), DX
	MOVQ   stride+48(FP), R8
	SHLQ   $2, R8
	MOVQ   idx+56(FP), R9
	MOVQ   m+64(FP), R10
	VMOVSS alpha+72(FP), X15

gh_row:
	MOVLQSX (R9), AX
	IMULQ   R8, AX
	ADDQ    DX, AX
	MOVQ    SI, BX
	MOVQ    DI, R11
	MOVQ    hg+32(FP), R12

gh_head:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	MOVQ   CX, R13

gh_32:
	CMPQ        R13, $32
	JLT         gh_8
	VMOVUPS     (BX), Y4
	VMOVUPS     32(BX), Y5
	VMOVUPS     64(BX), Y6
	VMOVUPS     96(BX), Y7
	VFMADD231PS (AX), Y4, Y0
	VFMADD231PS 32(AX), Y5, Y1
	VFMADD231PS 64(AX), Y6, Y2
	VFMADD231PS 96(AX), Y7, Y3
	ADDQ        $128, BX
	ADDQ        $128, AX
	SUBQ        $32, R13
	JMP         gh_32

gh_8:
	TESTQ       R13, R13
	JEQ         gh_sum
	VMOVUPS     (BX), Y4
	VFMADD231PS (AX), Y4, Y0
	ADDQ        $32, BX
	ADDQ        $32, AX
	SUBQ        $8, R13
	JMP         gh_8

gh_sum:
	VADDPS       Y1, Y0, Y0
	VADDPS       Y3, Y2, Y2
	VADDPS       Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	VMULSS       X15, X0, X0
	VMOVSS       X0, (R11)
	ADDQ         ldob+8(FP), R11
	DECQ         R12
	JNE          gh_head
	ADDQ         $4, DI
	ADDQ         $4, R9
	DECQ         R10
	JNE          gh_row
	VZEROUPPER
	RET

// func GatherAxpyHeads(y *float32, n, hg int, a *float32, ldab int, base *float32, stride int, idx *int32, m int)
// y[h·n + d] += Σ_i a[h·lda + i] · row_i[h·n + d] for h < hg (ldab = lda in bytes).
TEXT ·GatherAxpyHeads(SB), NOSPLIT, $0-72
	MOVQ y+0(FP), DI
	MOVQ n+8(FP), CX
	MOVQ a+24(FP), SI
	MOVQ base+40(FP), DX
	MOVQ stride+48(FP), R8
	SHLQ $2, R8
	MOVQ idx+56(FP), R9
	MOVQ m+64(FP), R10

gah_row:
	MOVLQSX (R9), AX
	IMULQ   R8, AX
	ADDQ    DX, AX
	MOVQ    DI, BX
	MOVQ    SI, R11
	MOVQ    hg+16(FP), R12

gah_head:
	VBROADCASTSS (R11), Y4
	MOVQ         CX, R13

gah_32:
	CMPQ        R13, $32
	JLT         gah_8
	VMOVUPS     (BX), Y0
	VMOVUPS     32(BX), Y1
	VMOVUPS     64(BX), Y2
	VMOVUPS     96(BX), Y3
	VFMADD231PS (AX), Y4, Y0
	VFMADD231PS 32(AX), Y4, Y1
	VFMADD231PS 64(AX), Y4, Y2
	VFMADD231PS 96(AX), Y4, Y3
	VMOVUPS     Y0, (BX)
	VMOVUPS     Y1, 32(BX)
	VMOVUPS     Y2, 64(BX)
	VMOVUPS     Y3, 96(BX)
	ADDQ        $128, BX
	ADDQ        $128, AX
	SUBQ        $32, R13
	JMP         gah_32

gah_8:
	TESTQ       R13, R13
	JEQ         gah_next
	VMOVUPS     (BX), Y0
	VFMADD231PS (AX), Y4, Y0
	VMOVUPS     Y0, (BX)
	ADDQ        $32, BX
	ADDQ        $32, AX
	SUBQ        $8, R13
	JMP         gah_8

gah_next:
	ADDQ ldab+32(FP), R11
	DECQ R12
	JNE  gah_head
	ADDQ $4, SI
	ADDQ $4, R9
	DECQ R10
	JNE  gah_row
	VZEROUPPER
	RET

// func ScatterAxpyHeads(base *float32, stride int, idx *int32, m int, a *float32, ldab int, x *float32, n, hg int)
// row_i[h·n + d] += a[h·lda + i] · x[h·n + d] for h < hg, i < m, in order of i (ldab = lda in bytes).
TEXT ·ScatterAxpyHeads(SB), NOSPLIT, $0-72
	MOVQ base+0(FP), DX
	MOVQ stride+8(FP), R8
	SHLQ $2, R8
	MOVQ idx+16(FP), R9
	MOVQ m+24(FP), R10
	MOVQ a+32(FP), DI
	MOVQ x+48(FP), SI
	MOVQ n+56(FP), CX

sah_row:
	MOVLQSX (R9), AX
	IMULQ   R8, AX
	ADDQ    DX, AX
	MOVQ    SI, BX
	MOVQ    DI, R11
	MOVQ    hg+64(FP), R12

sah_head:
	VBROADCASTSS (R11), Y4
	MOVQ         CX, R13

sah_32:
	CMPQ        R13, $32
	JLT         sah_8
	VMOVUPS     (AX), Y0
	VMOVUPS     32(AX), Y1
	VMOVUPS     64(AX), Y2
	VMOVUPS     96(AX), Y3
	VFMADD231PS (BX), Y4, Y0
	VFMADD231PS 32(BX), Y4, Y1
	VFMADD231PS 64(BX), Y4, Y2
	VFMADD231PS 96(BX), Y4, Y3
	VMOVUPS     Y0, (AX)
	VMOVUPS     Y1, 32(AX)
	VMOVUPS     Y2, 64(AX)
	VMOVUPS     Y3, 96(AX)
	ADDQ        $128, AX
	ADDQ        $128, BX
	SUBQ        $32, R13
	JMP         sah_32

sah_8:
	TESTQ       R13, R13
	JEQ         sah_next
	VMOVUPS     (AX), Y0
	VFMADD231PS (BX), Y4, Y0
	VMOVUPS     Y0, (AX)
	ADDQ        $32, AX
	ADDQ        $32, BX
	SUBQ        $8, R13
	JMP         sah_8

sah_next:
	ADDQ ldab+40(FP), R11
	DECQ R12
	JNE  sah_head
	ADDQ $4, DI
	ADDQ $4, R9
	DECQ R10
	JNE  sah_row
	VZEROUPPER
	RET

// SIGMOID_CONSTS loads the constants of SIGMOID8 (Y4..Y14, and Y15 = 0); it clobbers AX and X0.
#define SIGMOID_CONSTS BCAST($0x3fb8aa3b, Y14); BCAST($0x3f318000, Y13); BCAST($0xb95e8083, Y12); BCAST($0xc2ae0000, Y11); BCAST($0x39506967, Y4); BCAST($0x3ab743ce, Y5); BCAST($0x3c088908, Y6); BCAST($0x3d2aa9c1, Y7); BCAST($0x3e2aaaaa, Y8); BCAST($0x3f000000, Y9); BCAST($0x42ae0000, Y10); VXORPS Y15, Y15, Y15

// SIGMOID8 sets Y1 = σ(Y0) for the 8 lanes of Y0 (the exp as in ExpSub with −x clamped to at most 87); it
// clobbers Y0, Y2, Y3 and reads the constants of SIGMOID_CONSTS. The one statement of the sigmoid of Sigmoid,
// SwiGLU and SwiGLUBackward.
#define SIGMOID8 \
	VSUBPS       Y0, Y15, Y0 \
	VMINPS       Y10, Y0, Y0 \
	VCMPPS       $0x1d, Y11, Y0, Y3 \
	VMAXPS       Y11, Y0, Y0 \
	VMULPS       Y14, Y0, Y1 \
	VROUNDPS     $0, Y1, Y1 \
	VFNMADD231PS Y13, Y1, Y0 \
	VFNMADD231PS Y12, Y1, Y0 \
	VMOVAPS      Y4, Y2 \
	VFMADD213PS  Y5, Y0, Y2 \
	VFMADD213PS  Y6, Y0, Y2 \
	VFMADD213PS  Y7, Y0, Y2 \
	VFMADD213PS  Y8, Y0, Y2 \
	VFMADD213PS  Y9, Y0, Y2 \
	VMULPS       Y0, Y2, Y2 \
	VFMADD213PS  Y0, Y0, Y2 \
	VADDPS       expc<>+0(SB), Y2, Y2 \
	VCVTPS2DQ    Y1, Y1 \
	VPADDD       expc<>+32(SB), Y1, Y1 \
	VPSLLD       $23, Y1, Y1 \
	VMULPS       Y1, Y2, Y2 \
	VANDPS       Y3, Y2, Y2 \
	VADDPS       expc<>+0(SB), Y2, Y2 \
	VMOVUPS      expc<>+0(SB), Y1 \
	VDIVPS       Y2, Y1, Y1

// func Sigmoid(s, x *float32, n int)
// s[i] = 1/(1 + exp(−x[i])) for i < n (n a multiple of 8), the exp as in ExpSub with −x clamped to at most
// 87 (σ(x) for x < −87 comes out as 1/(1+e^87) ≈ 1.6e-38) and exp(−x) = 0 for x > 87 (σ = 1). A NaN in x
// gives 0 or 1, not NaN: callers multiply the result by x (SiLU), which carries the NaN on.
TEXT ·Sigmoid(SB), NOSPLIT, $0-24
	MOVQ         s+0(FP), SI
	MOVQ         x+8(FP), DI
	MOVQ         n+16(FP), CX
	SIGMOID_CONSTS

sg_8:
	CMPQ         CX, $8
	JLT          sg_done
	VMOVUPS      (DI), Y0
	SIGMOID8
	VMOVUPS      Y1, (SI)
	ADDQ         $32, DI
	ADDQ         $32, SI
	SUBQ         $8, CX
	JMP          sg_8

sg_done:
	VZEROUPPER
	RET

// func SwiGLU(h, a, u *float32, n int)
// h[i] = (a[i]·σ(a[i]))·u[i] for i < n (n a multiple of 8): SigmoidVec then kernels.SwiGLU's loop, in one pass
// with the same roundings.
TEXT ·SwiGLU(SB), NOSPLIT, $0-32
	MOVQ         h+0(FP), SI
	MOVQ         a+8(FP), DI
	MOVQ         u+16(FP), DX
	MOVQ         n+24(FP), CX
	SIGMOID_CONSTS

sw_8:
	CMPQ         CX, $8
	JLT          sw_done
	VMOVUPS      (DI), Y0
	SIGMOID8
	VMULPS       (DI), Y1, Y1
	VMULPS       (DX), Y1, Y1
	VMOVUPS      Y1, (SI)
	ADDQ         $32, DI
	ADDQ         $32, SI
	ADDQ         $32, DX
	SUBQ         $8, CX
	JMP          sw_8

sw_done:
	VZEROUPPER
	RET

// func SwiGLUBackward(da, du, dh, a, u *float32, n int)
// With s = σ(a[i]): du[i] = (dh[i]·a[i])·s and da[i] = ((dh[i]·u[i])·s)·(1 + a[i]·(1 − s)) for i < n (n a
// multiple of 8): SigmoidVec then kernels.SwiGLUBackward's loop, in one pass with the same roundings.
TEXT ·SwiGLUBackward(SB), NOSPLIT, $0-48
	MOVQ         da+0(FP), SI
	MOVQ         du+8(FP), R8
	MOVQ         dh+16(FP), R9
	MOVQ         a+24(FP), DI
	MOVQ         u+32(FP), DX
	MOVQ         n+40(FP), CX
	SIGMOID_CONSTS

sb_8:
	CMPQ         CX, $8
	JLT          sb_done
	VMOVUPS      (DI), Y0
	SIGMOID8
	VMOVUPS      (DI), Y2
	VMOVUPS      (R9), Y3
	VMULPS       Y2, Y3, Y0
	VMULPS       Y1, Y0, Y0
	VMOVUPS      Y0, (R8)
	VMOVUPS      expc<>+0(SB), Y0
	VSUBPS       Y1, Y0, Y0
	VMULPS       Y0, Y2, Y0
	VADDPS       expc<>+0(SB), Y0, Y0
	VMULPS       (DX), Y3, Y3
	VMULPS       Y1, Y3, Y3
	VMULPS       Y0, Y3, Y3
	VMOVUPS      Y3, (SI)
	ADDQ         $32, SI
	ADDQ         $32, R8
	ADDQ         $32, R9
	ADDQ         $32, DI
	ADDQ         $32, DX
	SUBQ         $8, CX
	JMP          sb_8

sb_done:
	VZEROUPPER
	RET

// func Max(x *float32, n int) float32
// The largest of x[0:n] (n ≥ 8, a multiple of 8).
TEXT ·Max(SB), NOSPLIT, $0-20
	MOVQ         x+0(FP), DI
	MOVQ         n+8(FP), CX
	VMOVUPS      (DI), Y0
	ADDQ         $32, DI
	SUBQ         $8, CX

mx_8:
	CMPQ         CX, $8
	JLT          mx_red
	VMAXPS       (DI), Y0, Y0
	ADDQ         $32, DI
	SUBQ         $8, CX
	JMP          mx_8

mx_red:
	VEXTRACTF128 $1, Y0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0x4e, X0, X1
	VMAXPS       X1, X0, X0
	VPERMILPS    $0xb1, X0, X1
	VMAXPS       X1, X0, X0
	VMOVSS       X0, ret+16(FP)
	VZEROUPPER
	RET

// func Scale(x *float32, n int, a float32)
// x[i] *= a for i < n (n a multiple of 8).
TEXT ·Scale(SB), NOSPLIT, $0-20
	MOVQ         x+0(FP), DI
	MOVQ         n+8(FP), CX
	VBROADCASTSS a+16(FP), Y1

sc_8:
	CMPQ         CX, $8
	JLT          sc_done
	VMULPS       (DI), Y1, Y0
	VMOVUPS      Y0, (DI)
	ADDQ         $32, DI
	SUBQ         $8, CX
	JMP          sc_8

sc_done:
	VZEROUPPER
	RET

// func Axpy(y, x *float32, n int, a float32)
// y[i] += a·x[i] for i < n (n a multiple of 8), the product rounded before the sum (no FMA), as Go's loop.
TEXT ·Axpy(SB), NOSPLIT, $0-28
	MOVQ         y+0(FP), DI
	MOVQ         x+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS a+24(FP), Y1

ax_8:
	CMPQ         CX, $8
	JLT          ax_done
	VMULPS       (SI), Y1, Y0
	VADDPS       (DI), Y0, Y0
	VMOVUPS      Y0, (DI)
	ADDQ         $32, DI
	ADDQ         $32, SI
	SUBQ         $8, CX
	JMP          ax_8

ax_done:
	VZEROUPPER
	RET
