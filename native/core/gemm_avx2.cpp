// AVX2/FMA micro-kernel (filled in by the blocked GEMM).
