//go:build amd64 && !purego

#include "textflag.h"

// Each kernel walks x in groups of r·h values (r = 8, 4, 2), and within a
// group the h columns four at a time: Yi holds x[g+i·h+j : g+i·h+j+4].
// In Go's operand order VADDPD b, a, d is d = a+b and VSUBPD b, a, d is
// d = a-b, as in the Go loops they replace.

// func radix8AVX2(x []float64, h int)
TEXT ·radix8AVX2(SB), NOSPLIT, $0-32
	MOVQ x_base+0(FP), SI
	MOVQ x_len+8(FP), CX
	MOVQ h+24(FP), DX
	SHLQ $3, DX              // h in bytes
	LEAQ (SI)(CX*8), R15     // end of x
r8group:
	CMPQ SI, R15
	JAE  r8done
	MOVQ SI, DI
	LEAQ (SI)(DX*1), R14     // end of the group's first row
r8col:
	LEAQ (DI)(DX*2), R8
	LEAQ (R8)(DX*2), R9
	LEAQ (R9)(DX*2), R10
	VMOVUPD (DI), Y0
	VMOVUPD (DI)(DX*1), Y1
	VMOVUPD (R8), Y2
	VMOVUPD (R8)(DX*1), Y3
	VMOVUPD (R9), Y4
	VMOVUPD (R9)(DX*1), Y5
	VMOVUPD (R10), Y6
	VMOVUPD (R10)(DX*1), Y7
	// Stage h.
	VADDPD Y1, Y0, Y8
	VSUBPD Y1, Y0, Y9
	VADDPD Y3, Y2, Y10
	VSUBPD Y3, Y2, Y11
	VADDPD Y5, Y4, Y12
	VSUBPD Y5, Y4, Y13
	VADDPD Y7, Y6, Y14
	VSUBPD Y7, Y6, Y15
	// Stage 2h.
	VADDPD Y10, Y8, Y0
	VADDPD Y11, Y9, Y1
	VSUBPD Y10, Y8, Y2
	VSUBPD Y11, Y9, Y3
	VADDPD Y14, Y12, Y4
	VADDPD Y15, Y13, Y5
	VSUBPD Y14, Y12, Y6
	VSUBPD Y15, Y13, Y7
	// Stage 4h.
	VADDPD Y4, Y0, Y8
	VADDPD Y5, Y1, Y9
	VADDPD Y6, Y2, Y10
	VADDPD Y7, Y3, Y11
	VSUBPD Y4, Y0, Y12
	VSUBPD Y5, Y1, Y13
	VSUBPD Y6, Y2, Y14
	VSUBPD Y7, Y3, Y15
	VMOVUPD Y8, (DI)
	VMOVUPD Y9, (DI)(DX*1)
	VMOVUPD Y10, (R8)
	VMOVUPD Y11, (R8)(DX*1)
	VMOVUPD Y12, (R9)
	VMOVUPD Y13, (R9)(DX*1)
	VMOVUPD Y14, (R10)
	VMOVUPD Y15, (R10)(DX*1)
	ADDQ $32, DI
	CMPQ DI, R14
	JB   r8col
	LEAQ (SI)(DX*8), SI
	JMP  r8group
r8done:
	VZEROUPPER
	RET

// func radix4AVX2(x []float64, h int)
TEXT ·radix4AVX2(SB), NOSPLIT, $0-32
	MOVQ x_base+0(FP), SI
	MOVQ x_len+8(FP), CX
	MOVQ h+24(FP), DX
	SHLQ $3, DX
	LEAQ (SI)(CX*8), R15
r4group:
	CMPQ SI, R15
	JAE  r4done
	MOVQ SI, DI
	LEAQ (SI)(DX*1), R14
r4col:
	LEAQ (DI)(DX*2), R8
	VMOVUPD (DI), Y0
	VMOVUPD (DI)(DX*1), Y1
	VMOVUPD (R8), Y2
	VMOVUPD (R8)(DX*1), Y3
	VADDPD Y1, Y0, Y4        // s0
	VSUBPD Y1, Y0, Y5        // s1
	VADDPD Y3, Y2, Y6        // s2
	VSUBPD Y3, Y2, Y7        // s3
	VADDPD Y6, Y4, Y0
	VADDPD Y7, Y5, Y1
	VSUBPD Y6, Y4, Y2
	VSUBPD Y7, Y5, Y3
	VMOVUPD Y0, (DI)
	VMOVUPD Y1, (DI)(DX*1)
	VMOVUPD Y2, (R8)
	VMOVUPD Y3, (R8)(DX*1)
	ADDQ $32, DI
	CMPQ DI, R14
	JB   r4col
	LEAQ (SI)(DX*4), SI
	JMP  r4group
r4done:
	VZEROUPPER
	RET

// func radix2AVX2(x []float64, h int)
TEXT ·radix2AVX2(SB), NOSPLIT, $0-32
	MOVQ x_base+0(FP), SI
	MOVQ x_len+8(FP), CX
	MOVQ h+24(FP), DX
	SHLQ $3, DX
	LEAQ (SI)(CX*8), R15
r2group:
	CMPQ SI, R15
	JAE  r2done
	MOVQ SI, DI
	LEAQ (SI)(DX*1), R14
r2col:
	VMOVUPD (DI), Y0
	VMOVUPD (DI)(DX*1), Y1
	VADDPD Y1, Y0, Y2
	VSUBPD Y1, Y0, Y3
	VMOVUPD Y2, (DI)
	VMOVUPD Y3, (DI)(DX*1)
	ADDQ $32, DI
	CMPQ DI, R14
	JB   r2col
	LEAQ (SI)(DX*2), SI
	JMP  r2group
r2done:
	VZEROUPPER
	RET

// Constants of roundBlockAVX2: ±QuantMax, QuantMax+1, 2^roundBits and 0.5
// as float64s, QuantMax+1 as an int32.
DATA roundk<>+0(SB)/8, $127.0
DATA roundk<>+8(SB)/8, $-127.0
DATA roundk<>+16(SB)/8, $128.0
DATA roundk<>+24(SB)/8, $65536.0
DATA roundk<>+32(SB)/8, $0.5
DATA roundk<>+40(SB)/4, $128
GLOBL roundk<>(SB), RODATA|NOPTR, $48

// func roundBlockAVX2(dst []int8, y []float64, u *[64]uint64) int
//
// Eight values a step, as roundByte does each: clamp to ±127 (counting the
// values beyond), w = trunc((v+128)·2^16 + 0.5) in int32 lanes, then
// (w + 16 bits of u) >> 16 - 128, packed to bytes. len(y) = roundBlock.
TEXT ·roundBlockAVX2(SB), NOSPLIT, $0-64
	MOVQ dst_base+0(FP), DX
	MOVQ y_base+24(FP), SI
	MOVQ y_len+32(FP), CX
	MOVQ u+48(FP), DI
	VBROADCASTSD roundk<>+0(SB), Y14
	VBROADCASTSD roundk<>+8(SB), Y13
	VBROADCASTSD roundk<>+16(SB), Y12
	VBROADCASTSD roundk<>+24(SB), Y11
	VBROADCASTSD roundk<>+32(SB), Y10
	VPBROADCASTD roundk<>+40(SB), X8
	XORQ R11, R11            // values clamped
	SHRQ $3, CX              // steps of eight
rbloop:
	VMOVUPD (SI), Y0
	VMOVUPD 32(SI), Y1
	// Count the values beyond ±127 (ordered compares: no NaN gets here).
	VCMPPD $0x1e, Y14, Y0, Y2 // v > 127
	VCMPPD $0x11, Y13, Y0, Y3 // v < -127
	VORPD  Y3, Y2, Y2
	VCMPPD $0x1e, Y14, Y1, Y4
	VCMPPD $0x11, Y13, Y1, Y5
	VORPD  Y5, Y4, Y4
	VMOVMSKPD Y2, AX
	VMOVMSKPD Y4, BX
	POPCNTL AX, AX
	POPCNTL BX, BX
	ADDQ AX, R11
	ADDQ BX, R11
	// Clamp, then w in units of 2^-16.
	VMINPD Y14, Y0, Y0
	VMAXPD Y13, Y0, Y0
	VMINPD Y14, Y1, Y1
	VMAXPD Y13, Y1, Y1
	VADDPD Y12, Y0, Y0
	VADDPD Y12, Y1, Y1
	VMULPD Y11, Y0, Y0
	VMULPD Y11, Y1, Y1
	VADDPD Y10, Y0, Y0
	VADDPD Y10, Y1, Y1
	VCVTTPD2DQY Y0, X0
	VCVTTPD2DQY Y1, X1
	// Add each value's 16 random bits, keep the integer part.
	VPMOVZXWD (DI), X2
	VPMOVZXWD 8(DI), X3
	VPADDD X2, X0, X0
	VPADDD X3, X1, X1
	VPSRLD $16, X0, X0
	VPSRLD $16, X1, X1
	VPSUBD X8, X0, X0
	VPSUBD X8, X1, X1
	VPACKSSDW X1, X0, X0
	VPACKSSWB X0, X0, X0
	MOVQ X0, (DX)
	ADDQ $64, SI
	ADDQ $16, DI
	ADDQ $8, DX
	DECQ CX
	JNZ  rbloop
	VZEROUPPER
	MOVQ R11, ret+56(FP)
	RET
