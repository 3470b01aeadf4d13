// Kernel gradient of a depthwise 3D convolution on XLA:CPU: an XLA FFI call.
//
// Built and loaded by vivit_jax/models/cpu_depthwise_conv.py (which documents the
// contract):
//   x: f32[N, T, H, W, C], grad: f32[N, T', H', W', C], attributes kernel_size, strides,
//   padding (the low padding of each of T, H, W) -> f32[kt * kh * kw, C] with
//   out[tap, c] = sum over n, t', h', w' of x[n, t' st + jt - pt, ..., c] grad[n, t', ..., c]
//   (zero where the index falls in the padding), taps in row-major order of (jt, jh, jw).
//
// Why it exists: XLA computes this as one reduction per tap over a materialised window
// of x (27 passes over both operands for a 3x3x3 kernel): 70 ms of MViTv2-S's first-stage
// query pooling backward against ~2 ms here, where each tap's partial sum stays in cache.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "parallel_for.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

ffi::Error KernelGradImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                          ffi::Buffer<ffi::F32> grad, ffi::Span<const int64_t> kernel_size,
                          ffi::Span<const int64_t> strides, ffi::Span<const int64_t> padding,
                          ffi::ResultBuffer<ffi::F32> out) {
  auto xd = x.dimensions(), gd = grad.dimensions();
  if (xd.size() != 5 || gd.size() != 5)
    return ffi::Error::InvalidArgument("depthwise kernel grad: x and grad must be rank 5");
  if (kernel_size.size() != 3 || strides.size() != 3 || padding.size() != 3)
    return ffi::Error::InvalidArgument(
        "depthwise kernel grad: kernel_size, strides and padding need 3 entries each");
  const int64_t n = xd[0], c = xd[4];
  if (gd[0] != n || gd[4] != c)
    return ffi::Error::InvalidArgument("depthwise kernel grad: x and grad differ in N or C");
  const int64_t in[3] = {xd[1], xd[2], xd[3]}, o[3] = {gd[1], gd[2], gd[3]};
  const int64_t k[3] = {kernel_size[0], kernel_size[1], kernel_size[2]};
  const int64_t s[3] = {strides[0], strides[1], strides[2]};
  const int64_t p[3] = {padding[0], padding[1], padding[2]};
  const int64_t taps = k[0] * k[1] * k[2];
  float* result = out->typed_data();
  std::fill(result, result + taps * c, 0.0f);
  if (n == 0 || c == 0 || o[0] * o[1] * o[2] == 0) return ffi::Error::Success();

  // Work items: (n, t') slices, the h' rows of each split in chunks until there are at
  // least 4 items per thread; each item sums into its own [taps, C] partial.
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  const int64_t slices = n * o[0];
  const int64_t chunks = std::min(o[1], std::max<int64_t>(1, (4 * threads + slices - 1) / slices));
  const int64_t rows_per_chunk = (o[1] + chunks - 1) / chunks;
  const int64_t items = slices * chunks;
  std::vector<float> partial(items * taps * c, 0.0f);
  const float* xp = x.typed_data();
  const float* gp = grad.typed_data();

  vivit_jax::parallel_for(pool, items, [&](int64_t item) {
    const int64_t slice = item / chunks, chunk = item % chunks;
    const int64_t b = slice / o[0], to = slice % o[0];
    float* acc = partial.data() + item * taps * c;
    const int64_t h_end = std::min(o[1], (chunk + 1) * rows_per_chunk);
    for (int64_t ho = chunk * rows_per_chunk; ho < h_end; ++ho) {
      const float* g_row = gp + (((b * o[0] + to) * o[1] + ho) * o[2]) * c;
      for (int64_t jt = 0; jt < k[0]; ++jt) {
        const int64_t ti = to * s[0] + jt - p[0];
        if (ti < 0 || ti >= in[0]) continue;
        for (int64_t jh = 0; jh < k[1]; ++jh) {
          const int64_t hi = ho * s[1] + jh - p[1];
          if (hi < 0 || hi >= in[1]) continue;
          const float* x_row = xp + (((b * in[0] + ti) * in[1] + hi) * in[2]) * c;
          for (int64_t jw = 0; jw < k[2]; ++jw) {
            float* __restrict a = acc + ((jt * k[1] + jh) * k[2] + jw) * c;
            // w' whose input column w' sw + jw - pw lies inside [0, W).
            const int64_t lo = std::max<int64_t>(0, (p[2] - jw + s[2] - 1) / s[2]);
            const int64_t last = in[2] - 1 + p[2] - jw;   // >= 0: some w' reaches it.
            const int64_t hi_w = last < 0 ? 0 : std::min(o[2], last / s[2] + 1);
            for (int64_t wo = lo; wo < hi_w; ++wo) {
              const float* __restrict xv = x_row + (wo * s[2] + jw - p[2]) * c;
              const float* __restrict gv = g_row + wo * c;
              for (int64_t ch = 0; ch < c; ++ch) a[ch] += xv[ch] * gv[ch];
            }
          }
        }
      }
    }
  });
  for (int64_t item = 0; item < items; ++item) {
    const float* a = partial.data() + item * taps * c;
    for (int64_t i = 0; i < taps * c; ++i) result[i] += a[i];
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(VivitDepthwiseConvKernelGradF32, KernelGradImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Attr<ffi::Span<const int64_t>>("kernel_size")
                                  .Attr<ffi::Span<const int64_t>>("strides")
                                  .Attr<ffi::Span<const int64_t>>("padding")
                                  .Ret<ffi::Buffer<ffi::F32>>());
