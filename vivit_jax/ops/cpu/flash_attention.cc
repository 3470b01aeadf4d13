// Softmax attention forward for XLA:CPU, float32: an XLA FFI custom call.
//
// Built and loaded by vivit_jax/models/cpu_attention.py (which documents the contract):
//   q: f32[..., Lq, H, D], k, v: f32[..., Lk, H, D],
//   bias: f32[..., Bb, Hb, Lq, Lk], mask: pred[..., Bm, Hm, Lq, Lk] (optional: zero
//   elements = none; added to / masking the scaled logits, broadcast over batch and heads),
//   rel: f32[..., B, H, Lq, T + Hr + W] (optional: a decomposed bias, e.g. MViTv2's
//   relative positions: key skip + (i, j, l) of a T x Hr x W key grid gets
//   rel[q, i] + rel[q, T + j] + rel[q, T + Hr + l] added to its logit, the first `skip`
//   keys nothing), attributes scale: f32, rel_t, rel_h, rel_w, rel_skip: i64
//   -> out: f32[..., Lq, H, D], lse: f32[..., H, Lq] (log-sum-exp of each logits row)
//
// Why it exists: XLA:CPU runs attention as generic dots whose 64-wide contraction (the
// head dim) keeps them at about half the speed of its dense layers, and it materialises
// logits between ops. Here one work item is one head's block of kQueryBlock queries: its
// [kQueryBlock, Lk] logits are computed by a register-blocked microkernel against the
// head's keys (packed once per head and thread into panels that stay in L1), turned into
// probabilities in place with a vectorised exp, and multiplied by the packed values with a
// second microkernel, all while the block sits in L2. Work items run on XLA's intra-op
// thread pool. Vector width and register count come from the compile target (-march=native:
// AVX-512, AVX2 or NEON); the arithmetic is plain GCC vector extensions.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "parallel_for.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

#if defined(__AVX512F__)
#define VIVIT_VEC_BYTES 64
constexpr int kRegisters = 32;
#elif defined(__AVX__)
#define VIVIT_VEC_BYTES 32
constexpr int kRegisters = 16;
#elif defined(__aarch64__)
#define VIVIT_VEC_BYTES 16
constexpr int kRegisters = 32;
#else
#define VIVIT_VEC_BYTES 16
constexpr int kRegisters = 16;
#endif

typedef float vf __attribute__((vector_size(VIVIT_VEC_BYTES)));
typedef float vf_unaligned __attribute__((vector_size(VIVIT_VEC_BYTES), aligned(4)));
typedef int32_t vi __attribute__((vector_size(VIVIT_VEC_BYTES)));
constexpr int kLanes = VIVIT_VEC_BYTES / 4;
typedef int8_t vbytes __attribute__((vector_size(kLanes), aligned(1)));   // kLanes bools

// Logits microkernel: kQkRows query rows x (2 * kLanes) keys of accumulators.
constexpr int kQkVectors = 2;
constexpr int kQkCols = kQkVectors * kLanes;
constexpr int kQkRows = kRegisters == 32 ? 12 : 6;
// Output microkernel: up to 4 vectors of the head dim per row; rows fill the registers.
constexpr int kPvAccumulators = kRegisters == 32 ? 24 : 12;
// Queries per work item, computed in whole granules (a short last block, or a short
// sequence such as TimeSformer's 8 frames, skips the granules past its rows); the granule
// is a multiple of every microkernel's row count (12, 6, 8, 4, 3, 24).
constexpr int kRowGranule = 24;
constexpr int kQueryBlock = 2 * kRowGranule;

// x rounded up to a multiple of m.
constexpr int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

inline vf broadcast(float x) { return x - vf{}; }   // (x - 0 folds; 0 + x does not)
inline vf load(const float* p) { return *reinterpret_cast<const vf*>(p); }
inline vf loadu(const float* p) { return *reinterpret_cast<const vf_unaligned*>(p); }
inline void store(float* p, vf x) { *reinterpret_cast<vf*>(p) = x; }

// A masked logit: far below any real one, yet finite, so that a row whose keys are all
// masked gets uniform weights (as in XLA's paths, which use float32's lowest value).
constexpr float kMaskedLogit = -1e30f;

// exp(x) for x <= 0 (Cephes' single-precision polynomial, relative error ~1e-7).
inline vf exp_nonpositive(vf x) {
#if defined(__AVX512F__)
  x = x < -104.0f ? broadcast(-104.0f) : x;   // exp(-104) rounds to 0 (scalef below).
#else
  x = x < -87.0f ? broadcast(-87.0f) : x;   // exp(-87) ~ 1.6e-38: 2^n stays a normal float.
#endif
  const vf round = broadcast(12582912.0f);   // 1.5 * 2^23: adding it rounds to an integer.
  vf n = (x * 1.44269504088896341f + round) - round;
  vf r = x - n * 0.693359375f + n * 2.12194440e-4f;
  vf p = broadcast(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
#if defined(__AVX512F__)
  return _mm512_scalef_ps(p, n);   // p * 2^n in one instruction, underflowing to 0.
#else
  vi bits = (__builtin_convertvector(n, vi) + 127) << 23;
  return p * (vf)bits;   // 2^n: GCC vector casts reinterpret the bits.
#endif
}

float* aligned_floats(std::vector<float>& buffer, size_t n) {
  // Over-allocates by one vector so that the returned pointer can be vector-aligned.
  if (buffer.size() < n + kLanes) buffer.resize(n + kLanes);
  uintptr_t p = reinterpret_cast<uintptr_t>(buffer.data());
  return reinterpret_cast<float*>((p + VIVIT_VEC_BYTES - 1) & ~uintptr_t{VIVIT_VEC_BYTES - 1});
}

// The one microkernel, a register tile of R rows x V vectors of a product:
//   o[r, 0:V*kLanes] = (accumulate ? o[r, ...] : 0) + sum_{k < n} a[r, k] b[k, 0:V*kLanes]
// with a[r, k] at a[r * a_row + k * a_col] (a_col = 1: rows of a; a_row = 1: a^T) and b's
// rows b_stride apart, vector-aligned. With `maxes`, also maxes[r] = elementwise
// max(maxes[r], the new row r). Each a[r, k] is broadcast straight into an FMA operand.
template <int R, int V>
inline void product_tile(const float* __restrict a, int64_t a_row, int64_t a_col, int64_t n,
                         const float* __restrict b, int64_t b_stride, float* __restrict o,
                         int64_t o_stride, bool accumulate, vf* __restrict maxes) {
  vf acc[R][V];
#pragma GCC unroll 24
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < V; ++c)
      acc[r][c] = accumulate ? load(o + r * o_stride + c * kLanes) : vf{};
  for (int64_t k = 0; k < n; ++k) {
    vf bk[V];
#pragma GCC unroll 4
    for (int c = 0; c < V; ++c) bk[c] = load(b + k * b_stride + c * kLanes);
#pragma GCC unroll 24
    for (int r = 0; r < R; ++r) {
      vf x = broadcast(a[r * a_row + k * a_col]);
#pragma GCC unroll 4
      for (int c = 0; c < V; ++c) acc[r][c] += x * bk[c];
    }
  }
#pragma GCC unroll 24
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < V; ++c) store(o + r * o_stride + c * kLanes, acc[r][c]);
  if (maxes != nullptr) {
#pragma GCC unroll 24
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int c = 0; c < V; ++c) maxes[r] = acc[r][c] > maxes[r] ? acc[r][c] : maxes[r];
  }
}

// s[r, 0:kQkCols] = q[r, 0:d] . panel[:, 0:kQkCols] for r < kQkRows; q rows are q_stride
// apart, panel is [d, kQkCols] (one block of kQkCols keys, transposed); `maxes` as above.
inline void logits_tile(const float* q, int64_t q_stride, int d, const float* panel, float* s,
                        int64_t s_stride, vf* maxes) {
  product_tile<kQkRows, kQkVectors>(q, q_stride, 1, d, panel, kQkCols, s, s_stride, false,
                                    maxes);
}

// The output of `rows` (a multiple of kRowGranule) rows for head-dim vectors [c0, c0 + V).
template <int V>
void output_block(const float* p, int64_t p_stride, int64_t lk, const float* v,
                  int64_t v_stride, float* o, int64_t o_stride, int rows, int c0) {
  constexpr int R = kPvAccumulators / V;
  static_assert(kRowGranule % R == 0, "row granule must be a multiple of the tile rows");
  for (int r = 0; r < rows; r += R)
    product_tile<R, V>(p + r * p_stride, p_stride, 1, lk, v + c0 * kLanes, v_stride,
                       o + r * o_stride + c0 * kLanes, o_stride, false, nullptr);
}

// o[0:n, :] += a[0:rows, 0:n]^T b[0:rows, :] over head-dim vectors [c0, c0 + V), in
// tiles of R rows of o: a's columns and o's rows up to n rounded up to R (at most
// kPvAccumulators more) must exist.
template <int V>
void transposed_block(const float* a, int64_t a_stride, int rows, int64_t n, const float* b,
                      int64_t b_stride, float* o, int64_t o_stride, int c0) {
  constexpr int R = kPvAccumulators / V;
  for (int64_t t = 0; t < n; t += R)
    product_tile<R, V>(a + t, 1, a_stride, rows, b + c0 * kLanes, b_stride,
                       o + t * o_stride + c0 * kLanes, o_stride, true, nullptr);
}

// Runs `block<V>(..., c0)` over the head-dim vectors in groups of at most 4.
#define VIVIT_FOR_VECTOR_GROUPS(vectors, block, ...)                  \
  for (int c0 = 0; c0 < (vectors); c0 += 4) {                        \
    switch (std::min(4, (vectors) - c0)) {                           \
      case 4: block<4>(__VA_ARGS__, c0); break;                      \
      case 3: block<3>(__VA_ARGS__, c0); break;                      \
      case 2: block<2>(__VA_ARGS__, c0); break;                      \
      default: block<1>(__VA_ARGS__, c0);                            \
    }                                                                \
  }

// dst[j0 + jj + i * kQkCols ...]: rows [0, n) of src (row_stride apart, d wide) as
// transposed panels [d, kQkCols] of kQkCols rows each, zero past n up to n_padded.
void pack_panels(const float* src, int64_t row_stride, int64_t n, int64_t n_padded,
                 int64_t d, float* dst) {
  for (int64_t j0 = 0; j0 < n_padded; j0 += kQkCols) {
    float* panel = dst + j0 * d;
    for (int64_t j = j0; j < j0 + kQkCols; ++j)
      for (int64_t i = 0; i < d; ++i)
        panel[i * kQkCols + (j - j0)] = j < n ? src[j * row_stride + i] : 0.0f;
  }
}

// dst[j, 0:d_padded] = scale * src[j, 0:d] for j < n, zero columns past d and zero rows
// in [n, n_padded).
void pack_rows(const float* src, int64_t row_stride, int64_t n, int64_t n_padded,
               int64_t d, int64_t d_padded, float scale, float* dst) {
  for (int64_t j = 0; j < n_padded; ++j)
    for (int64_t i = 0; i < d_padded; ++i)
      dst[j * d_padded + i] = (j < n && i < d) ? src[j * row_stride + i] * scale : 0.0f;
}

// Per-thread buffers; the packed keys/values are reused while the thread stays on a head.
struct Scratch {
  std::vector<float> panels, values, queries, probs, out;   // forward and backward
  std::vector<float> v_panels, grads, dlogits, dk, dv;      // backward only
  uint64_t head_key = ~uint64_t{0};
  float* partial = nullptr;   // this thread's copy of dbias in call `partial_call`
  uint64_t partial_call = ~uint64_t{0};
};
thread_local Scratch scratch;
std::atomic<uint64_t> call_counter{0};

// The sizes of one attention call: q [..., Lq, H, D], k and v [..., Lk, H, D], leading
// axes (from vmap) folded into `batch`.
struct AttentionShape {
  int64_t batch = 1, lq = 0, lk = 0, h = 0, d = 0;
  bool empty() const { return batch == 0 || lq == 0 || lk == 0 || h == 0 || d == 0; }
};

ffi::Error decode_shape(ffi::Buffer<ffi::F32>::Dimensions qd,
                        ffi::Buffer<ffi::F32>::Dimensions kd,
                        ffi::Buffer<ffi::F32>::Dimensions vd, AttentionShape& shape) {
  const size_t rank = qd.size();
  if (rank < 3 || kd.size() != rank || vd.size() != rank)
    return ffi::Error::InvalidArgument("flash attention: q, k, v must have one rank >= 3");
  for (size_t i = 0; i + 3 < rank; ++i) {
    if (qd[i] != kd[i] || qd[i] != vd[i])
      return ffi::Error::InvalidArgument("flash attention: batch dims of q, k, v differ");
    shape.batch *= qd[i];
  }
  shape.lq = qd[rank - 3], shape.h = qd[rank - 2], shape.d = qd[rank - 1];
  shape.lk = kd[rank - 3];
  for (auto dims : {kd, vd})
    if (dims[rank - 3] != shape.lk || dims[rank - 2] != shape.h || dims[rank - 1] != shape.d)
      return ffi::Error::InvalidArgument("flash attention: k and v must be [..., Lk, H, D]");
  return ffi::Error::Success();
}

// Where one (batch, head) pair's [Lq, Lk] slice of an optional logits term (bias or mask:
// [..., Bb, Hb, Lq, Lk] with q's leading axes, Bb in {1, B}, Hb in {1, H}) starts.
struct TermLayout {
  bool present = false, per_batch = false, per_head = false;
  int64_t inner_batch = 1, heads = 1, slice_size = 0, size = 0;
  // b: the flat batch index over all of q's leading axes.
  int64_t offset(int64_t b, int64_t head) const {
    const int64_t sb = per_batch ? b : b / inner_batch;
    return (per_head ? sb * heads + head : sb) * slice_size;
  }
  // Whether every (batch, head) pair has a slice of its own (no sum in the gradient).
  bool one_to_one() const { return per_batch && per_head; }
};

template <typename Dims>
ffi::Error decode_term(Dims td, ffi::Buffer<ffi::F32>::Dimensions qd,
                       const AttentionShape& shape, const char* name, TermLayout& term) {
  int64_t size = 1;
  for (int64_t n : td) size *= n;
  if (size == 0) return ffi::Error::Success();   // no term
  const size_t rank = qd.size();
  auto invalid = [&] {
    return ffi::Error::InvalidArgument(std::string("flash attention: ") + name +
                                       " must be [..., 1|B, 1|H, Lq, Lk] with q's leading axes");
  };
  if (rank < 4 || td.size() != rank) return invalid();
  for (size_t i = 0; i + 4 < rank; ++i)
    if (td[i] != qd[i]) return invalid();
  const int64_t inner_batch = qd[rank - 4];
  if ((td[rank - 4] != 1 && td[rank - 4] != inner_batch) ||
      (td[rank - 3] != 1 && td[rank - 3] != shape.h) || td[rank - 2] != shape.lq ||
      td[rank - 1] != shape.lk)
    return invalid();
  term.present = true;
  term.per_batch = td[rank - 4] == inner_batch;
  term.per_head = td[rank - 3] == shape.h;
  term.inner_batch = inner_batch;
  term.heads = shape.h;
  term.slice_size = shape.lq * shape.lk;
  term.size = size;
  return ffi::Error::Success();
}

// The optional decomposed bias: one [Lq, T + Hr + W] slice per (batch, head) pair.
struct RelLayout {
  bool present = false;
  int64_t t = 0, h = 0, w = 0, skip = 0, width = 0;   // width = t + h + w
  int64_t offset(int64_t bh, int64_t lq) const { return bh * lq * width; }
};

template <typename Dims>
ffi::Error decode_rel(Dims rd, ffi::Buffer<ffi::F32>::Dimensions qd,
                      const AttentionShape& shape, int64_t t, int64_t h, int64_t w,
                      int64_t skip, RelLayout& rel) {
  int64_t size = 1;
  for (int64_t n : rd) size *= n;
  if (size == 0) return ffi::Error::Success();   // no term
  const size_t rank = qd.size();
  bool ok = rank >= 4 && rd.size() == rank && t > 0 && h > 0 && w > 0 && skip >= 0 &&
            skip + t * h * w == shape.lk;
  for (size_t i = 0; ok && i + 4 < rank; ++i) ok = rd[i] == qd[i];
  ok = ok && rd[rank - 4] == qd[rank - 4] && rd[rank - 3] == shape.h &&
       rd[rank - 2] == shape.lq && rd[rank - 1] == t + h + w;
  if (!ok)
    return ffi::Error::InvalidArgument(
        "flash attention: rel must be [..., B, H, Lq, rel_t + rel_h + rel_w] with q's "
        "leading axes and Lk = rel_skip + rel_t * rel_h * rel_w");
  rel = RelLayout{true, t, h, w, skip, t + h + w};
  return ffi::Error::Success();
}

// s[skip + (i * Hr + j) * W + l] += rel_t[i] + rel_h[j] + rel_w[l] (one logits row).
inline void add_rel(float* s, const float* row, const RelLayout& rel) {
  const float *rt = row, *rh = row + rel.t, *rw = row + rel.t + rel.h;
  float* p = s + rel.skip;
  for (int64_t i = 0; i < rel.t; ++i)
    for (int64_t j = 0; j < rel.h; ++j, p += rel.w) {
      const float base = rt[i] + rh[j];
      for (int64_t l = 0; l < rel.w; ++l) p[l] += base + rw[l];
    }
}

// The gradient of `add_rel` for one row: drow = the sums of ds over the other two axes.
inline void rel_gradient(const float* ds, float* drow, const RelLayout& rel) {
  float *dt = drow, *dh = drow + rel.t, *dw = drow + rel.t + rel.h;
  std::fill(drow, drow + rel.width, 0.0f);
  const float* p = ds + rel.skip;
  for (int64_t i = 0; i < rel.t; ++i)
    for (int64_t j = 0; j < rel.h; ++j, p += rel.w) {
      float sum = 0.0f;
      for (int64_t l = 0; l < rel.w; ++l) {
        sum += p[l];
        dw[l] += p[l];
      }
      dt[i] += sum;
      dh[j] += sum;
    }
}

// s[0:n] = s + bias (if any), kMaskedLogit where !mask (if any); returns the new max.
inline float add_terms(float* s, int64_t n, const float* bias, const bool* mask) {
  vf m = broadcast(-std::numeric_limits<float>::infinity());
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    vf x = load(s + j);
    if (bias != nullptr) x += loadu(bias + j);
    if (mask != nullptr) {
      vi keep = __builtin_convertvector(*reinterpret_cast<const vbytes*>(mask + j), vi);
      x = keep != 0 ? x : broadcast(kMaskedLogit);
    }
    store(s + j, x);
    m = x > m ? x : m;
  }
  float mx = m[0];
  for (int i = 1; i < kLanes; ++i) mx = std::max(mx, m[i]);
  for (; j < n; ++j) {
    float x = s[j];
    if (bias != nullptr) x += bias[j];
    if (mask != nullptr && !mask[j]) x = kMaskedLogit;
    s[j] = x;
    mx = std::max(mx, x);
  }
  return mx;
}

// Decodes q, k, v and the optional bias and mask; see the contract at the top.
ffi::Error decode_call(ffi::Buffer<ffi::F32>& q, ffi::Buffer<ffi::F32>& k,
                       ffi::Buffer<ffi::F32>& v, ffi::Buffer<ffi::F32>& bias,
                       ffi::Buffer<ffi::PRED>& mask, ffi::Buffer<ffi::F32>& rel,
                       int64_t rel_t, int64_t rel_h, int64_t rel_w, int64_t rel_skip,
                       AttentionShape& shape, TermLayout& bias_layout,
                       TermLayout& mask_layout, RelLayout& rel_layout) {
  if (ffi::Error e = decode_shape(q.dimensions(), k.dimensions(), v.dimensions(), shape);
      e.failure())
    return e;
  if (ffi::Error e = decode_term(bias.dimensions(), q.dimensions(), shape, "bias", bias_layout);
      e.failure())
    return e;
  if (ffi::Error e = decode_term(mask.dimensions(), q.dimensions(), shape, "mask", mask_layout);
      e.failure())
    return e;
  return decode_rel(rel.dimensions(), q.dimensions(), shape, rel_t, rel_h, rel_w, rel_skip,
                    rel_layout);
}

ffi::Error FlashAttentionImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> q,
                              ffi::Buffer<ffi::F32> k, ffi::Buffer<ffi::F32> v,
                              ffi::Buffer<ffi::F32> bias, ffi::Buffer<ffi::PRED> mask,
                              ffi::Buffer<ffi::F32> rel, float scale, int64_t rel_t,
                              int64_t rel_h, int64_t rel_w, int64_t rel_skip,
                              ffi::ResultBuffer<ffi::F32> out,
                              ffi::ResultBuffer<ffi::F32> lse) {
  AttentionShape shape;
  TermLayout bias_layout, mask_layout;
  RelLayout rel_layout;
  if (ffi::Error e = decode_call(q, k, v, bias, mask, rel, rel_t, rel_h, rel_w, rel_skip,
                                 shape, bias_layout, mask_layout, rel_layout);
      e.failure())
    return e;
  if (shape.empty()) return ffi::Error::Success();
  const bool terms = bias_layout.present || mask_layout.present || rel_layout.present;
  const float* relp = rel.typed_data();
  // (Plain copies, not a structured binding: C++17 lambdas cannot capture those.)
  const int64_t batch = shape.batch, lq = shape.lq, lk = shape.lk, h = shape.h, d = shape.d;

  const int64_t lk_padded = round_up(lk, kQkCols);   // keys, to whole panels
  const int64_t d_padded = round_up(d, kLanes);       // head dim, to whole vectors
  const int64_t query_blocks = round_up(lq, kQueryBlock) / kQueryBlock;
  const float* qp = q.typed_data();
  const float* kp = k.typed_data();
  const float* vp = v.typed_data();
  float* op = out->typed_data();
  float* lsep = lse->typed_data();
  const float* biasp = bias.typed_data();
  const bool* maskp = mask.typed_data();
  const uint64_t call = call_counter.fetch_add(1);
  const int64_t row = h * d;   // stride between tokens in q, k, v, out

  vivit_jax::parallel_for(pool, batch * h * query_blocks, [&](int64_t item) {
    const int64_t bh = item / query_blocks, b = bh / h, head = bh % h;
    const int64_t q0 = (item % query_blocks) * kQueryBlock;
    const int64_t rows = std::min<int64_t>(kQueryBlock, lq - q0);
    const int computed = static_cast<int>(round_up(rows, kRowGranule));
    Scratch& s = scratch;
    float* panels = aligned_floats(s.panels, lk_padded * d);
    float* values = aligned_floats(s.values, lk * d_padded);
    const uint64_t head_key = call * 0x100000000ull + static_cast<uint64_t>(bh);
    if (s.head_key != head_key) {   // Pack this head's keys (transposed) and values.
      pack_panels(kp + b * lk * row + head * d, row, lk, lk_padded, d, panels);
      pack_rows(vp + b * lk * row + head * d, row, lk, lk, d, d_padded, 1.0f, values);
      s.head_key = head_key;
    }
    float* queries = aligned_floats(s.queries, kQueryBlock * d_padded);
    pack_rows(qp + (b * lq + q0) * row + head * d, row, rows, computed, d, d_padded, scale,
              queries);

    // Logits, with each row's running max over the panels that hold no padded key.
    float* probs = aligned_floats(s.probs, kQueryBlock * lk_padded);
    const int64_t unpadded = lk / kQkCols * kQkCols;
    vf maxes[kQueryBlock];
    for (int r = 0; r < computed; ++r)
      maxes[r] = broadcast(-std::numeric_limits<float>::infinity());
    for (int64_t j0 = 0; j0 < lk_padded; j0 += kQkCols)
      for (int r = 0; r < computed; r += kQkRows)
        logits_tile(queries + r * d_padded, d_padded, static_cast<int>(d), panels + j0 * d,
                    probs + r * lk_padded + j0, lk_padded,
                    j0 < unpadded && !terms ? maxes + r : nullptr);

    // Softmax numerators in place: exp(logit - row max); row sums. With a bias or mask,
    // they are applied to the logits first and give the row max.
    float row_max[kQueryBlock], row_sum[kQueryBlock];
    const int64_t full = lk / kLanes * kLanes;
    const float* bias_rows =
        bias_layout.present ? biasp + bias_layout.offset(b, head) + q0 * lk : nullptr;
    const bool* mask_rows =
        mask_layout.present ? maskp + mask_layout.offset(b, head) + q0 * lk : nullptr;
    const float* rel_rows = rel_layout.present
        ? relp + rel_layout.offset(bh, lq) + q0 * rel_layout.width : nullptr;
    for (int64_t r = 0; r < rows; ++r) {
      float* pr = probs + r * lk_padded;
      float mx;
      if (terms) {
        if (rel_rows != nullptr) add_rel(pr, rel_rows + r * rel_layout.width, rel_layout);
        mx = add_terms(pr, lk, bias_rows ? bias_rows + r * lk : nullptr,
                       mask_rows ? mask_rows + r * lk : nullptr);
      } else {
        mx = maxes[r][0];
        for (int i = 1; i < kLanes; ++i) mx = std::max(mx, maxes[r][i]);
        for (int64_t j = unpadded; j < lk; ++j) mx = std::max(mx, pr[j]);
      }
      vf total = vf{};
      for (int64_t j = 0; j < full; j += kLanes) {
        vf e = exp_nonpositive(load(pr + j) - mx);
        store(pr + j, e);
        total += e;
      }
      float sum = 0.0f;
      for (int i = 0; i < kLanes; ++i) sum += total[i];
      for (int64_t j = full; j < lk; ++j) sum += (pr[j] = std::exp(pr[j] - mx));
      row_max[r] = mx;
      row_sum[r] = sum;
    }

    float* o = aligned_floats(s.out, kQueryBlock * d_padded);
    const int vectors = static_cast<int>(d_padded / kLanes);
    VIVIT_FOR_VECTOR_GROUPS(vectors, output_block, probs, lk_padded, lk, values, d_padded,
                            o, d_padded, computed);
    float* oh = op + (b * lq + q0) * row + head * d;
    float* lseh = lsep + bh * lq + q0;
    for (int64_t r = 0; r < rows; ++r) {
      const float inv = 1.0f / row_sum[r];
      for (int64_t i = 0; i < d; ++i) oh[r * row + i] = o[r * d_padded + i] * inv;
      lseh[r] = row_max[r] + std::log(row_sum[r]);
    }
  });
  return ffi::Error::Success();
}

// The backward pass of one [..., Lq, H, D] attention: per head (one work item, so that
// its dK and dV accumulate without sharing), per block of kQueryBlock queries:
//   P = exp(q k^T scale [+ bias, masked] - lse), dP = dO v^T, dS = P (dP - rowsum(dO * out)),
//   dV += P^T dO, dK += dS^T q scale, dQ = dS k scale, dbias (+)= dS, drel = dS summed
//   over the key grid's other two axes.
ffi::Error FlashAttentionBackwardImpl(
    ffi::ThreadPool pool, ffi::Buffer<ffi::F32> q, ffi::Buffer<ffi::F32> k,
    ffi::Buffer<ffi::F32> v, ffi::Buffer<ffi::F32> bias, ffi::Buffer<ffi::PRED> mask,
    ffi::Buffer<ffi::F32> rel, ffi::Buffer<ffi::F32> out, ffi::Buffer<ffi::F32> lse,
    ffi::Buffer<ffi::F32> grad, float scale, int64_t rel_t, int64_t rel_h, int64_t rel_w,
    int64_t rel_skip, ffi::ResultBuffer<ffi::F32> dq, ffi::ResultBuffer<ffi::F32> dk,
    ffi::ResultBuffer<ffi::F32> dv, ffi::ResultBuffer<ffi::F32> dbias,
    ffi::ResultBuffer<ffi::F32> drel) {
  AttentionShape shape;
  TermLayout bias_layout, mask_layout;
  RelLayout rel_layout;
  if (ffi::Error e = decode_call(q, k, v, bias, mask, rel, rel_t, rel_h, rel_w, rel_skip,
                                 shape, bias_layout, mask_layout, rel_layout);
      e.failure())
    return e;
  float* dbiasp = dbias->typed_data();
  float* drelp = drel->typed_data();
  if (shape.empty()) {
    if (bias_layout.present) std::fill(dbiasp, dbiasp + bias_layout.size, 0.0f);
    if (rel_layout.present)
      std::fill(drelp, drelp + shape.batch * shape.h * shape.lq * rel_layout.width, 0.0f);
    return ffi::Error::Success();
  }
  const bool terms = bias_layout.present || mask_layout.present || rel_layout.present;
  const float* relp = rel.typed_data();
  const float* biasp = bias.typed_data();
  const bool* maskp = mask.typed_data();
  // A bias shared by several (batch, head) pairs gets its gradient summed: each thread
  // adds into a zeroed copy of its own, and the copies are added up at the end.
  const bool sum_dbias = bias_layout.present && !bias_layout.one_to_one();
  const uint64_t call = call_counter.fetch_add(1);
  std::mutex partials_mu;
  std::vector<std::unique_ptr<std::vector<float>>> partials;
  // (Plain copies, not a structured binding: C++17 lambdas cannot capture those.)
  const int64_t batch = shape.batch, lq = shape.lq, lk = shape.lk, h = shape.h, d = shape.d;

  const int64_t lk_panels = round_up(lk, kQkCols);
  // Row length of the [block, keys] buffers: room for transposed_block's last tile, and
  // whole panels so that rows stay vector-aligned.
  const int64_t width = lk_panels + round_up(kPvAccumulators, kQkCols);
  const int64_t d_padded = round_up(d, kLanes);
  const int vectors = static_cast<int>(d_padded / kLanes);
  const int64_t row = h * d;
  const float *qp = q.typed_data(), *kp = k.typed_data(), *vp = v.typed_data();
  const float *op = out.typed_data(), *lsep = lse.typed_data(), *gp = grad.typed_data();
  float *dqp = dq->typed_data(), *dkp = dk->typed_data(), *dvp = dv->typed_data();

  vivit_jax::parallel_for(pool, batch * h, [&](int64_t bh) {
    const int64_t b = bh / h, head = bh % h;
    const int64_t kv_offset = b * lk * row + head * d;
    Scratch& s = scratch;
    s.head_key = ~uint64_t{0};   // the forward's packed head is overwritten below
    float* k_panels = aligned_floats(s.panels, lk_panels * d);
    float* v_panels = aligned_floats(s.v_panels, lk_panels * d);
    float* k_rows = aligned_floats(s.values, lk * d_padded);
    pack_panels(kp + kv_offset, row, lk, lk_panels, d, k_panels);
    pack_panels(vp + kv_offset, row, lk, lk_panels, d, v_panels);
    pack_rows(kp + kv_offset, row, lk, lk, d, d_padded, 1.0f, k_rows);
    float* dk_acc = aligned_floats(s.dk, width * d_padded);
    float* dv_acc = aligned_floats(s.dv, width * d_padded);
    std::fill(dk_acc, dk_acc + width * d_padded, 0.0f);
    std::fill(dv_acc, dv_acc + width * d_padded, 0.0f);
    float* queries = aligned_floats(s.queries, kQueryBlock * d_padded);
    float* grads = aligned_floats(s.grads, kQueryBlock * d_padded);
    float* probs = aligned_floats(s.probs, kQueryBlock * width);
    float* dlogits = aligned_floats(s.dlogits, kQueryBlock * width);
    float* o = aligned_floats(s.out, kQueryBlock * d_padded);
    // This pair's [Lq, Lk] slices of the bias, the mask and dbias (or its thread's copy).
    const float* bias_head =
        bias_layout.present ? biasp + bias_layout.offset(b, head) : nullptr;
    const bool* mask_head =
        mask_layout.present ? maskp + mask_layout.offset(b, head) : nullptr;
    float* dbias_head = nullptr;
    if (bias_layout.present) {
      if (sum_dbias) {
        if (s.partial_call != call) {
          std::lock_guard<std::mutex> lock(partials_mu);
          partials.push_back(std::make_unique<std::vector<float>>(bias_layout.size, 0.0f));
          s.partial = partials.back()->data();
          s.partial_call = call;
        }
        dbias_head = s.partial + bias_layout.offset(b, head);
      } else {
        dbias_head = dbiasp + bias_layout.offset(b, head);
      }
    }

    for (int64_t q0 = 0; q0 < lq; q0 += kQueryBlock) {
      const int64_t rows = std::min<int64_t>(kQueryBlock, lq - q0);
      const int computed = static_cast<int>(round_up(rows, kRowGranule));
      const int64_t q_offset = (b * lq + q0) * row + head * d;
      pack_rows(qp + q_offset, row, rows, computed, d, d_padded, scale, queries);
      pack_rows(gp + q_offset, row, rows, computed, d, d_padded, 1.0f, grads);
      for (int64_t j0 = 0; j0 < lk_panels; j0 += kQkCols)
        for (int r = 0; r < computed; r += kQkRows) {
          logits_tile(queries + r * d_padded, d_padded, static_cast<int>(d), k_panels + j0 * d,
                      probs + r * width + j0, width, nullptr);
          logits_tile(grads + r * d_padded, d_padded, static_cast<int>(d), v_panels + j0 * d,
                      dlogits + r * width + j0, width, nullptr);
        }
      const int64_t full = lk / kLanes * kLanes;
      for (int64_t r = 0; r < computed; ++r) {
        float* pr = probs + r * width;
        float* dr = dlogits + r * width;
        int64_t j = 0;
        if (r < rows) {
          const float lse_r = lsep[bh * lq + q0 + r];
          const float* g_r = gp + q_offset + r * row;
          const float* o_r = op + q_offset + r * row;
          const int64_t term_row = (q0 + r) * lk;
          const int64_t rel_row = rel_layout.offset(bh, lq) + (q0 + r) * rel_layout.width;
          if (rel_layout.present) add_rel(pr, relp + rel_row, rel_layout);
          if (terms)
            add_terms(pr, lk, bias_head ? bias_head + term_row : nullptr,
                      mask_head ? mask_head + term_row : nullptr);
          float delta = 0.0f;   // rowsum(dO * out)
          for (int64_t i = 0; i < d; ++i) delta += g_r[i] * o_r[i];
          for (; j < full; j += kLanes) {
            vf p = exp_nonpositive(load(pr + j) - lse_r);
            store(pr + j, p);
            store(dr + j, p * (load(dr + j) - delta));
          }
          for (; j < lk; ++j) {
            pr[j] = std::exp(pr[j] - lse_r);
            dr[j] = pr[j] * (dr[j] - delta);
          }
          if (dbias_head != nullptr) {   // d logits = dS: the bias's gradient
            float* db = dbias_head + term_row;
            if (sum_dbias)
              for (int64_t i = 0; i < lk; ++i) db[i] += dr[i];
            else
              std::memcpy(db, dr, lk * sizeof(float));
          }
          if (rel_layout.present) rel_gradient(dr, drelp + rel_row, rel_layout);
        }
        std::fill(pr + j, pr + width, 0.0f);   // padded keys and padded query rows: 0
        std::fill(dr + j, dr + width, 0.0f);
      }
      VIVIT_FOR_VECTOR_GROUPS(vectors, transposed_block, probs, width, computed, lk, grads,
                              d_padded, dv_acc, d_padded);
      VIVIT_FOR_VECTOR_GROUPS(vectors, transposed_block, dlogits, width, computed, lk, queries,
                              d_padded, dk_acc, d_padded);
      VIVIT_FOR_VECTOR_GROUPS(vectors, output_block, dlogits, width, lk, k_rows, d_padded, o,
                              d_padded, computed);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < d; ++i)
          dqp[q_offset + r * row + i] = o[r * d_padded + i] * scale;
    }
    for (int64_t j = 0; j < lk; ++j)
      for (int64_t i = 0; i < d; ++i) {
        dkp[kv_offset + j * row + i] = dk_acc[j * d_padded + i];
        dvp[kv_offset + j * row + i] = dv_acc[j * d_padded + i];
      }
  });
  if (sum_dbias) {   // dbias = the sum of the threads' copies, in chunks over threads
    constexpr int64_t kChunk = 1 << 14;
    const int64_t n = bias_layout.size;
    vivit_jax::parallel_for(pool, (n + kChunk - 1) / kChunk, [&](int64_t c) {
      const int64_t lo = c * kChunk, hi = std::min(n, lo + kChunk);
      std::fill(dbiasp + lo, dbiasp + hi, 0.0f);
      for (const auto& partial : partials)
        for (int64_t i = lo; i < hi; ++i) dbiasp[i] += (*partial)[i];
    });
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(VivitFlashAttentionBackwardF32, FlashAttentionBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()   // q
                                  .Arg<ffi::Buffer<ffi::F32>>()   // k
                                  .Arg<ffi::Buffer<ffi::F32>>()   // v
                                  .Arg<ffi::Buffer<ffi::F32>>()   // bias (or empty)
                                  .Arg<ffi::Buffer<ffi::PRED>>()  // mask (or empty)
                                  .Arg<ffi::Buffer<ffi::F32>>()   // rel (or empty)
                                  .Arg<ffi::Buffer<ffi::F32>>()   // out
                                  .Arg<ffi::Buffer<ffi::F32>>()   // lse
                                  .Arg<ffi::Buffer<ffi::F32>>()   // grad of out
                                  .Attr<float>("scale")
                                  .Attr<int64_t>("rel_t")
                                  .Attr<int64_t>("rel_h")
                                  .Attr<int64_t>("rel_w")
                                  .Attr<int64_t>("rel_skip")
                                  .Ret<ffi::Buffer<ffi::F32>>()   // dq
                                  .Ret<ffi::Buffer<ffi::F32>>()   // dk
                                  .Ret<ffi::Buffer<ffi::F32>>()   // dv
                                  .Ret<ffi::Buffer<ffi::F32>>()   // dbias (bias's shape)
                                  .Ret<ffi::Buffer<ffi::F32>>());  // drel (rel's shape)

XLA_FFI_DEFINE_HANDLER_SYMBOL(VivitFlashAttentionF32, FlashAttentionImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()   // q
                                  .Arg<ffi::Buffer<ffi::F32>>()   // k
                                  .Arg<ffi::Buffer<ffi::F32>>()   // v
                                  .Arg<ffi::Buffer<ffi::F32>>()   // bias (or empty)
                                  .Arg<ffi::Buffer<ffi::PRED>>()  // mask (or empty)
                                  .Arg<ffi::Buffer<ffi::F32>>()   // rel (or empty)
                                  .Attr<float>("scale")
                                  .Attr<int64_t>("rel_t")
                                  .Attr<int64_t>("rel_h")
                                  .Attr<int64_t>("rel_w")
                                  .Attr<int64_t>("rel_skip")
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

// Lanes of one vector register in this build (for tests and benchmarks).
extern "C" int vivit_flash_attention_lanes() { return kLanes; }
