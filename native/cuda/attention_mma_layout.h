// Index math of the tensor-core attention (attention_mma.cu), host and device: which
// element of a tile each lane's registers hold for mma.sync.m16n8k16 (bf16 in, fp32
// accumulate), which shared-memory row each lane hands to ldmatrix.x4, and the XOR
// swizzle of the tiles in shared memory. The kernels use only these functions for
// fragment and shared-memory indices, so the CPU test (native/tools/cuda_twins_test)
// can emulate ldmatrix and mma from the PTX ISA's definitions and check them.
//
// Fragments (PTX ISA, "Matrix fragments for mma.m16n8k16", g = lane / 4, t = lane % 4):
//   A 16x16 (row-major): reg r holds 2 bf16 at row g + 8 * (r & 1), cols 2t + 8 * (r >> 1) + {0, 1}
//   B 16x8 (k x n):      reg r holds 2 bf16 at k = 2t + 8 * r + {0, 1}, n = g
//   C 16x8 fp32:         c[i] at row g + 8 * (i >> 1), col 2t + (i & 1)
// ldmatrix.x4: lane L supplies the address of row (L % 8) of 8x8 matrix L / 8; lane L
// receives from matrix m (register m) row L / 4, cols 2 (L % 4) + {0, 1}, or with .trans
// rows 2 (L % 4) + {0, 1}, col L / 4.
#pragma once
#include <cstdint>

#include "host_device.h"

namespace hs::cuda::mma {

inline constexpr int kRows = 64;  // query rows (forward, dQ) or keys (dK/dV) per block: 4 warps x 16
inline constexpr int kKeys = 64;  // keys (forward, dQ) or queries (dK/dV) per inner tile
inline constexpr int kWarps = 4;
inline constexpr int kThreads = 32 * kWarps;

// --- mma.m16n8k16 fragment coordinates ---
HS_HD inline int a_row(int lane, int reg) { return (lane >> 2) + 8 * (reg & 1); }
HS_HD inline int a_col(int lane, int reg, int half) { return 2 * (lane & 3) + 8 * (reg >> 1) + half; }
HS_HD inline int b_k(int lane, int reg, int half) { return 2 * (lane & 3) + 8 * reg + half; }
HS_HD inline int b_n(int lane) { return lane >> 2; }
HS_HD inline int c_row(int lane, int i) { return (lane >> 2) + 8 * (i >> 1); }
HS_HD inline int c_col(int lane, int i) { return 2 * (lane & 3) + (i & 1); }

// --- accumulator -> A operand (P = softmax(S) feeds P V without leaving registers) ---
// A register r, half h of a 16x16 k-block comes from accumulator n-block acc_block(r)
// (0: k 0..7, 1: k 8..15) element acc_elem(r, h).
HS_HD inline int acc_block(int reg) { return reg >> 1; }
HS_HD inline int acc_elem(int reg, int half) { return 2 * (reg & 1) + half; }

// --- ldmatrix.x4 row addresses (row, col of the first element) relative to a 16x16 block ---
// A operand (16 rows x 16 k) of a row-major tile: registers 0..3 = A regs 0..3.
HS_HD inline int ldsm_a_row(int lane) { return lane & 15; }
HS_HD inline int ldsm_a_col(int lane) { return (lane >> 4) * 8; }
// B operand from a tile stored n-major (row = n, col = k; e.g. K rows for S = Q K^T):
// two n-blocks of 8 over one k16: registers = {b0, b1} of n-block 0, then of n-block 1.
HS_HD inline int ldsm_bn_row(int lane) { return (lane & 7) + ((lane >> 4) << 3); }
HS_HD inline int ldsm_bn_col(int lane) { return ((lane >> 3) & 1) * 8; }
// B operand from a tile stored k-major (row = k, col = n; e.g. V rows for O = P V), with
// .trans: registers = {b0, b1} of n-block 0 (cols 0..7), then of n-block 1 (cols 8..15).
HS_HD inline int ldsm_bt_row(int lane) { return (lane & 7) + (((lane >> 3) & 1) << 3); }
HS_HD inline int ldsm_bt_col(int lane) { return (lane >> 4) * 8; }

// --- shared-memory tiles: [rows][D] bf16, 16-byte chunks XOR-swizzled by row % 8 so that
// the 8 rows one ldmatrix phase reads fall in 8 different bank groups ---
HS_HD inline int swz(int row, int col, int D) { return row * D + ((((col >> 3) ^ (row & 7))) << 3) + (col & 7); }

}  // namespace hs::cuda::mma
