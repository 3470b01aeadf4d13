// Dense float32 matrix products for XLA:CPU through a BLAS sgemm: an XLA FFI call.
//
// Built and loaded by vivit_jax/models/cpu_matmul.py (which documents the contract),
// linked against the OpenBLAS of the `scipy-openblas32` wheel, or with
// -DVIVIT_JAX_BLAS_MKL against Intel MKL's single dynamic library (the `mkl` wheel):
//   a: f32[..., M, K] (or [..., K, M] with transpose_a), b: f32[..., K, N] (or
//   [..., N, K] with transpose_b) -> f32[..., M, N]; leading axes (from vmap) loop.
//
// Why it exists: at ViViT-B's dense-layer shapes ([3137, 768] x [768, 3072] and back)
// XLA:CPU's own dots reach 216-304 GFLOP/s on two Sapphire Rapids cores and OpenBLAS's
// sgemm, called as below, 263-307 (PyTorch's MKL 249-361); dense layers are two thirds
// of ViViT's FLOPs. OpenBLAS runs single-threaded (cpu_matmul.py sets it): the rows of the product
// are split over XLA's intra-op threads instead, so that OpenBLAS's own spinning threads
// never compete with XLA's for the cores.
#include <algorithm>
#include <cstdint>

#include "parallel_for.h"
#include "xla/ffi/api/ffi.h"

#if defined(VIVIT_JAX_BLAS_MKL)
// The `mkl` wheel ships libraries without headers: the two entry points, as MKL declares
// them (CBLAS enums are ints; LP64 interface).
extern "C" {
enum { CblasRowMajor = 101 };
enum { CblasNoTrans = 111, CblasTrans = 112 };
void cblas_sgemm(int layout, int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const float* a, int lda, const float* b, int ldb, float beta, float* c,
                 int ldc);
int MKL_Set_Threading_Layer(int layer);
}
typedef int blasint;
#define VIVIT_SGEMM cblas_sgemm
#else
#include "cblas.h"
#define VIVIT_SGEMM scipy_cblas_sgemm
#endif

namespace ffi = xla::ffi;

namespace {

ffi::Error MatmulImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> b,
                      bool transpose_a, bool transpose_b, ffi::ResultBuffer<ffi::F32> out) {
  auto ad = a.dimensions(), bd = b.dimensions();
  const size_t rank = ad.size();
  if (rank < 2 || bd.size() != rank)
    return ffi::Error::InvalidArgument("matmul: a and b must have one rank >= 2");
  int64_t batch = 1;
  for (size_t i = 0; i + 2 < rank; ++i) {
    if (ad[i] != bd[i]) return ffi::Error::InvalidArgument("matmul: batch axes differ");
    batch *= ad[i];
  }
  const int64_t m = transpose_a ? ad[rank - 1] : ad[rank - 2];
  const int64_t k = transpose_a ? ad[rank - 2] : ad[rank - 1];
  const int64_t kb = transpose_b ? bd[rank - 1] : bd[rank - 2];
  const int64_t n = transpose_b ? bd[rank - 2] : bd[rank - 1];
  if (k != kb) return ffi::Error::InvalidArgument("matmul: contracted sizes differ");
  const int64_t limit = int64_t{1} << 31;
  if (m >= limit || n >= limit || k >= limit)
    return ffi::Error::InvalidArgument("matmul: a dimension exceeds the BLAS's 32-bit ints");
  const float* ap = a.typed_data();
  const float* bp = b.typed_data();
  float* op = out->typed_data();
  if (m == 0 || n == 0) return ffi::Error::Success();
  // One block of the product per thread: rows (each thread reads its part of a) when a is
  // the larger operand, else columns (each thread packs its part of b). At ViViT-B's
  // shapes this beat the other split by 5-10% on 2 cores.
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  const bool by_rows = m * k > k * n;
  const int64_t extent = by_rows ? m : n;
  const int64_t size = std::max<int64_t>(64, ((extent + threads - 1) / threads + 63) / 64 * 64);
  const int64_t blocks = (extent + size - 1) / size;
  vivit_jax::parallel_for(pool, batch * blocks, [&](int64_t item) {
    const int64_t i = item / blocks, start = (item % blocks) * size;
    const int64_t len = std::min(size, extent - start);
    const int64_t mb = by_rows ? len : m, nb = by_rows ? n : len;
    float* c = op + i * m * n + (by_rows ? start * n : start);
    if (k == 0) {
      for (int64_t r = 0; r < mb; ++r) std::fill(c + r * n, c + r * n + nb, 0.0f);
      return;
    }
    // The block's rows of a (columns if transposed) or columns of b (rows if transposed).
    const float* a_block = ap + i * m * k + (by_rows ? (transpose_a ? start : start * k) : 0);
    const float* b_block = bp + i * k * n + (by_rows ? 0 : (transpose_b ? start * k : start));
    VIVIT_SGEMM(CblasRowMajor, transpose_a ? CblasTrans : CblasNoTrans,
                transpose_b ? CblasTrans : CblasNoTrans, static_cast<blasint>(mb),
                static_cast<blasint>(nb), static_cast<blasint>(k), 1.0f, a_block,
                static_cast<blasint>(transpose_a ? m : k), b_block,
                static_cast<blasint>(transpose_b ? k : n), 0.0f, c,
                static_cast<blasint>(n));
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(VivitMatmulF32, MatmulImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Attr<bool>("transpose_a")
                                  .Attr<bool>("transpose_b")
                                  .Ret<ffi::Buffer<ffi::F32>>());

// The BLAS's own threads off: parallelism comes from XLA's pool (see above). MKL takes
// its sequential layer (1 = MKL_THREADING_SEQUENTIAL) before its first call.
extern "C" void vivit_matmul_single_threaded_blas() {
#if defined(VIVIT_JAX_BLAS_MKL)
  MKL_Set_Threading_Layer(1);
#else
  scipy_openblas_set_num_threads(1);
#endif
}
