// HS_HD marks a function callable from host and device code: the headers that hold the
// arithmetic a kernel and its CPU twin share (random_weights.h, attention_mma_layout.h)
// compile under nvcc and under the host compiler.
#pragma once

#if defined(__CUDACC__)
#define HS_HD __host__ __device__
#else
#define HS_HD
#endif
