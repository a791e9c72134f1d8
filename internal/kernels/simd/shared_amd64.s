// shared_amd64.s: AVX2+FMA float32 kernels behind kernels/gather_shared.go (package simd): several heads
// against ONE shared row per selected token (the absorbed MQA mode of sparse attention, where every head
// attends to the same latent entry). Heads are taken four at a time (hg a multiple of 4), rows sixteen floats
// at a time (n a multiple of 16); every selected row has been bounds-checked by the Go caller, and m ≥ 1.

#include "textflag.h"

// func GatherDotShared(out *float32, ldob int, x *float32, n, hg int, base *float32, stride int, idx *int32, m int, alpha float32, pf *float32)
// out[h·ldo + i] = alpha · x[h·n : (h+1)·n] · row_i[0:n] for h < hg, i < m (ldob = ldo in bytes). Rows go two
// at a time (each x load serves both), an odd last row alone; the count left is kept in m+64(FP). The whole
// rows (stride floats) two pairs ahead are prefetched, of base and, when pf is not nil, of pf (same stride).
TEXT ·GatherDotShared(SB), NOSPLIT, $0-88
	MOVQ         out+0(FP), DI
	MOVQ         ldob+8(FP), R15
	MOVQ         x+16(FP), SI
	MOVQ         n+24(FP), R13
	SHLQ         $2, R13
	LEAQ         (R13)(R13*2), R14
	MOVQ         base+40(FP), DX
	MOVQ         stride+48(FP), R8
	SHLQ         $2, R8
	MOVQ         idx+56(FP), R9
	VBROADCASTSS alpha+72(FP), Y15

gs_pair:
	MOVQ m+64(FP), CX
	CMPQ CX, $2
	JLT  gs_one
	MOVLQSX (R9), AX
	IMULQ   R8, AX
	ADDQ    DX, AX
	MOVLQSX 4(R9), R10
	IMULQ   R8, R10
	ADDQ    DX, R10
	CMPQ    CX, $6
	JLT     gs_pstart

	// Prefetch the selected rows two pairs ahead (random rows of a table larger than L2), and those of pf.
	MOVLQSX 16(R9), BX
	IMULQ   R8, BX
	MOVLQSX 20(R9), R11
	IMULQ   R8, R11
	XORQ    CX, CX

gs_ppf:
	PREFETCHT0 (DX)(BX*1)
	PREFETCHT0 (DX)(R11*1)
	ADDQ       $64, BX
	ADDQ       $64, R11
	ADDQ       $64, CX
	CMPQ       CX, R8
	JLT        gs_ppf
	MOVQ       pf+80(FP), R12
	TESTQ      R12, R12
	JEQ        gs_pstart
	SUBQ       CX, BX
	SUBQ       CX, R11
	XORQ       CX, CX

gs_ppf2:
	PREFETCHT0 (R12)(BX*1)
	PREFETCHT0 (R12)(R11*1)
	ADDQ       $64, BX
	ADDQ       $64, R11
	ADDQ       $64, CX
	CMPQ       CX, R8
	JLT        gs_ppf2

gs_pstart:
	MOVQ SI, BX
	MOVQ DI, R11
	MOVQ hg+32(FP), R12
	SHRQ $2, R12

gs_pblk:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	XORQ   CX, CX

gs_pchunk:
	VMOVUPS     (AX)(CX*1), Y8
	VMOVUPS     (R10)(CX*1), Y9
	VMOVUPS     (BX), Y10
	VFMADD231PS Y8, Y10, Y0
	VFMADD231PS Y9, Y10, Y4
	VMOVUPS     (BX)(R13*1), Y11
	VFMADD231PS Y8, Y11, Y1
	VFMADD231PS Y9, Y11, Y5
	VMOVUPS     (BX)(R13*2), Y12
	VFMADD231PS Y8, Y12, Y2
	VFMADD231PS Y9, Y12, Y6
	VMOVUPS     (BX)(R14*1), Y13
	VFMADD231PS Y8, Y13, Y3
	VFMADD231PS Y9, Y13, Y7
	ADDQ        $32, BX
	ADDQ        $32, CX
	CMPQ        CX, R13
	JLT         gs_pchunk

	// Y1 = [row A heads 0-3 | row B heads 0-3] after the horizontal sums.
	VHADDPS    Y1, Y0, Y0
	VHADDPS    Y3, Y2, Y2
	VHADDPS    Y2, Y0, Y0
	VHADDPS    Y5, Y4, Y4
	VHADDPS    Y7, Y6, Y6
	VHADDPS    Y6, Y4, Y4
	VPERM2F128 $0x20, Y4, Y0, Y1
	VPERM2F128 $0x31, Y4, Y0, Y2
	VADDPS     Y2, Y1, Y1
	VMULPS     Y15, Y1, Y1
	VEXTRACTF128 $1, Y1, X2
	MOVQ       R11, CX
	VMOVSS     X1, (CX)
	VMOVSS     X2, 4(CX)
	ADDQ       R15, CX
	VEXTRACTPS $1, X1, (CX)
	VEXTRACTPS $1, X2, 4(CX)
	ADDQ       R15, CX
	VEXTRACTPS $2, X1, (CX)
	VEXTRACTPS $2, X2, 4(CX)
	ADDQ       R15, CX
	VEXTRACTPS $3, X1, (CX)
	VEXTRACTPS $3, X2, 4(CX)
	ADDQ       R15, CX
	MOVQ       CX, R11
	ADDQ       R14, BX
	DECQ       R12
	JNE        gs_pblk

	ADDQ $8, DI
	ADDQ $8, R9
	SUBQ $2, m+64(FP)
	JMP  gs_pair

gs_one:
	TESTQ   CX, CX
	JEQ     gs_done
	MOVLQSX (R9), AX
	IMULQ   R8, AX
	ADDQ    DX, AX
	MOVQ    SI, BX
	MOVQ    DI, R11
	MOVQ    hg+32(FP), R12
	SHRQ    $2, R12

gs_blk:
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	XORQ   CX, CX

gs_chunk:
	VMOVUPS     (AX)(CX*1), Y8
	VMOVUPS     32(AX)(CX*1), Y9
	VFMADD231PS (BX), Y8, Y0
	VFMADD231PS 32(BX), Y9, Y4
	VFMADD231PS (BX)(R13*1), Y8, Y1
	VFMADD231PS 32(BX)(R13*1), Y9, Y5
	VFMADD231PS (BX)(R13*2), Y8, Y2
	VFMADD231PS 32(BX)(R13*2), Y9, Y6
	VFMADD231PS (BX)(R14*1), Y8, Y3
	VFMADD231PS 32(BX)(R14*1), Y9, Y7
	ADDQ        $64, BX
	ADDQ        $64, CX
	CMPQ        CX, R13
	JLT         gs_chunk

	VADDPS       Y4, Y0, Y0
	VADDPS       Y5, Y1, Y1
	VADDPS       Y6, Y2, Y2
	VADDPS       Y7, Y3, Y3
	VHADDPS      Y1, Y0, Y0
	VHADDPS      Y3, Y2, Y2
	VHADDPS      Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS       X1, X0, X0
	VMULPS       X15, X0, X0
	MOVQ         R11, CX
	VMOVSS       X0, (CX)
	ADDQ         R15, CX
	VEXTRACTPS   $1, X0, (CX)
	ADDQ         R15, CX
	VEXTRACTPS   $2, X0, (CX)
	ADDQ         R15, CX
	VEXTRACTPS   $3, X0, (CX)
	ADDQ         R15, CX
	MOVQ         CX, R11
	ADDQ         R14, BX
	DECQ         R12
	JNE          gs_blk

gs_done:
	VZEROUPPER
	RET

// func GatherAxpyShared(y *float32, n, hg int, a *float32, ldab int, base *float32, stride int, idx *int32, m int)
// y[h·n + d] += Σ_i a[h·lda + i] · row_i[d] for h < hg, d < n (ldab = lda in bytes).
TEXT ·GatherAxpyShared(SB), NOSPLIT, $0-72
	MOVQ y+0(FP), DI
	MOVQ n+8(FP), R13
	SHLQ $2, R13
	LEAQ (R13)(R13*2), R14
	MOVQ a+24(FP), SI
	MOVQ ldab+32(FP), R15
	LEAQ (R15)(R15*2), R11
	MOVQ base+40(FP), DX
	MOVQ stride+48(FP), R8
	SHLQ $2, R8
	MOVQ hg+16(FP), R12
	SHRQ $2, R12

gas_blk:
	XORQ CX, CX

gas_chunk:
	VMOVUPS (DI), Y0
	VMOVUPS 32(DI), Y1
	VMOVUPS (DI)(R13*1), Y2
	VMOVUPS 32(DI)(R13*1), Y3
	VMOVUPS (DI)(R13*2), Y4
	VMOVUPS 32(DI)(R13*2), Y5
	VMOVUPS (DI)(R14*1), Y6
	VMOVUPS 32(DI)(R14*1), Y7
	MOVQ    idx+56(FP), R9
	MOVQ    m+64(FP), R10
	MOVQ    SI, BX

gas_row:
	MOVLQSX      (R9), AX
	IMULQ        R8, AX
	ADDQ         DX, AX
	VMOVUPS      (AX)(CX*1), Y8
	VMOVUPS      32(AX)(CX*1), Y9
	VBROADCASTSS (BX), Y10
	VFMADD231PS  Y8, Y10, Y0
	VFMADD231PS  Y9, Y10, Y1
	VBROADCASTSS (BX)(R15*1), Y11
	VFMADD231PS  Y8, Y11, Y2
	VFMADD231PS  Y9, Y11, Y3
	VBROADCASTSS (BX)(R15*2), Y12
	VFMADD231PS  Y8, Y12, Y4
	VFMADD231PS  Y9, Y12, Y5
	VBROADCASTSS (BX)(R11*1), Y13
	VFMADD231PS  Y8, Y13, Y6
	VFMADD231PS  Y9, Y13, Y7
	ADDQ         $4, BX
	ADDQ         $4, R9
	DECQ         R10
	JNE          gas_row

	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, (DI)(R13*1)
	VMOVUPS Y3, 32(DI)(R13*1)
	VMOVUPS Y4, (DI)(R13*2)
	VMOVUPS Y5, 32(DI)(R13*2)
	VMOVUPS Y6, (DI)(R14*1)
	VMOVUPS Y7, 32(DI)(R14*1)
	ADDQ    $64, DI
	ADDQ    $64, CX
	CMPQ    CX, R13
	JLT     gas_chunk

	ADDQ R14, DI
	LEAQ (SI)(R15*4), SI
	DECQ R12
	JNE  gas_blk
	VZEROUPPER
	RET

// func ScatterAxpyShared(base *float32, stride int, idx *int32, m int, a *float32, ldab int, x *float32, n, hg int)
// row_i[d] += Σ_h a[h·lda + i] · x[h·n + d] for i < m in order, d < n (ldab = lda in bytes).
TEXT ·ScatterAxpyShared(SB), NOSPLIT, $0-72
	MOVQ base+0(FP), DX
	MOVQ stride+8(FP), R8
	SHLQ $2, R8
	MOVQ idx+16(FP), R9
	MOVQ m+24(FP), R10
	MOVQ a+32(FP), SI
	MOVQ ldab+40(FP), R15
	LEAQ (R15)(R15*2), R11
	MOVQ n+56(FP), R13
	SHLQ $2, R13
	LEAQ (R13)(R13*2), R14

ss_row:
	MOVLQSX (R9), AX
	IMULQ   R8, AX
	ADDQ    DX, AX
	CMPQ    R10, $1
	JEQ     ss_start

	// Prefetch the next selected row while this one is updated.
	MOVLQSX 4(R9), BX
	IMULQ   R8, BX
	ADDQ    DX, BX
	XORQ    CX, CX

ss_pf:
	PREFETCHT0 (BX)(CX*1)
	ADDQ       $64, CX
	CMPQ       CX, R13
	JLT        ss_pf

ss_start:
	MOVQ x+48(FP), BX
	MOVQ SI, DI
	MOVQ hg+64(FP), R12
	SHRQ $2, R12

ss_blk:
	VBROADCASTSS (DI), Y8
	VBROADCASTSS (DI)(R15*1), Y9
	VBROADCASTSS (DI)(R15*2), Y10
	VBROADCASTSS (DI)(R11*1), Y11
	XORQ         CX, CX

ss_chunk:
	VMOVUPS     (AX)(CX*1), Y0
	VMOVUPS     32(AX)(CX*1), Y1
	VMULPS      (BX), Y8, Y2
	VMULPS      32(BX), Y8, Y3
	VFMADD231PS (BX)(R13*1), Y9, Y0
	VFMADD231PS 32(BX)(R13*1), Y9, Y1
	VFMADD231PS (BX)(R13*2), Y10, Y2
	VFMADD231PS 32(BX)(R13*2), Y10, Y3
	VFMADD231PS (BX)(R14*1), Y11, Y0
	VFMADD231PS 32(BX)(R14*1), Y11, Y1
	VADDPS      Y2, Y0, Y0
	VADDPS      Y3, Y1, Y1
	VMOVUPS     Y0, (AX)(CX*1)
	VMOVUPS     Y1, 32(AX)(CX*1)
	ADDQ        $64, BX
	ADDQ        $64, CX
	CMPQ        CX, R13
	JLT         ss_chunk

	ADDQ R14, BX
	LEAQ (DI)(R15*4), DI
	DECQ R12
	JNE  ss_blk

	ADDQ $4, SI
	ADDQ $4, R9
	DECQ R10
	JNE  ss_row
	VZEROUPPER
	RET
