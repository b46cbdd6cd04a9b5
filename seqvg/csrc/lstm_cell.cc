// seqvg's LSTM ops for TensorFlow on a CPU, built and loaded by
// seqvg/kernels.py, which registers their gradients:
//   SeqvgLstmSeq / SeqvgLstmSeqGrad: the whole sequence, forward and
//     backward, one op each; the LSTM training loop (seqvg/fastlstm.py).
//   SeqvgLstmCell / SeqvgLstmCellGrad: the elementwise maths of one step;
//     the gradient probe's loop (seqvg/probe.py), which taps every state.
//   SeqvgSquaredNorms: the probe's norms, summed in double.
// Tests: tests/test_kernels.py (against TF ops and Keras's LSTM loop).
//
// Layout is transposed, (rows, batch) row-major, as in seqvg/fastlstm.py:
//   z       (4u, B) gate pre-activations, row blocks [i, f, g, o] (Keras order)
//   c_prev  (u, B)
//   eps     (u, B) zeros, or empty: the gradient probe's perturbation of c_t
//   h = o * tanh(c),  c = f * c_prev + i * g (+ eps)
//   act     (5u, B) the cached [i, f, g, o, tanh(c)] the gradient reads
// The gradient of eps is the total dL/dc_t (carried, and through h_t),
// which the probe measures (seqvg/probe.py); the gradient of the returned c
// is only the carried part.
//
// The activations are Eigen's (logistic, tanh): the functions TensorFlow's
// own Sigmoid and Tanh kernels evaluate, so the results match Keras's.
// Single-threaded: at seqvg's sizes (u x B ~ 8k) handing work to the thread
// pool measured slower than doing it (30 vs 18 us per step).
#include <algorithm>
#include <atomic>
#include <cfenv>
#include <functional>
#include <thread>
#include <vector>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SEQVG_PAUSE() _mm_pause()
#else
#define SEQVG_PAUSE() std::this_thread::yield()
#endif

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "unsupported/Eigen/CXX11/Tensor"

namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;
using Arr = Eigen::Map<Eigen::ArrayXf>;
using CArr = Eigen::Map<const Eigen::ArrayXf>;

// (rows * u, B) for a (u, B) shape.
absl::Status Rows(InferenceContext* ctx, ShapeHandle state, int rows, ShapeHandle* out) {
  DimensionHandle r;
  TF_RETURN_IF_ERROR(ctx->Multiply(ctx->Dim(state, 0), rows, &r));
  *out = ctx->Matrix(r, ctx->Dim(state, 1));
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("SeqvgLstmCell")
    .Input("z: float")
    .Input("c_prev: float")
    .Input("eps: float")
    .Output("h: float")
    .Output("c: float")
    .Output("act: float")
    .SetShapeFn([](InferenceContext* ctx) {
      ShapeHandle state, act;
      TF_RETURN_IF_ERROR(ctx->WithRank(ctx->input(1), 2, &state));
      TF_RETURN_IF_ERROR(Rows(ctx, state, 5, &act));
      ctx->set_output(0, state);
      ctx->set_output(1, state);
      ctx->set_output(2, act);
      return absl::OkStatus();
    });

// dact may be empty (0 elements): the cache's gradient is then zero, as it
// is whenever nothing but the gradient itself reads act. d_eps is the total
// dL/dc_t with with_eps, else empty.
REGISTER_OP("SeqvgLstmCellGrad")
    .Input("act: float")
    .Input("c_prev: float")
    .Input("dh: float")
    .Input("dc: float")
    .Input("dact: float")
    .Attr("with_eps: bool = false")
    .Output("dz: float")
    .Output("dc_prev: float")
    .Output("d_eps: float")
    .SetShapeFn([](InferenceContext* ctx) {
      ShapeHandle state, dz;
      bool with_eps;
      TF_RETURN_IF_ERROR(ctx->GetAttr("with_eps", &with_eps));
      TF_RETURN_IF_ERROR(ctx->WithRank(ctx->input(1), 2, &state));
      TF_RETURN_IF_ERROR(Rows(ctx, state, 4, &dz));
      ctx->set_output(0, dz);
      ctx->set_output(1, state);
      ctx->set_output(2, with_eps ? state : ctx->Vector(0));
      return absl::OkStatus();
    });

class SeqvgLstmCellOp : public OpKernel {
 public:
  explicit SeqvgLstmCellOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor& z = ctx->input(0);
    const Tensor& cp = ctx->input(1);
    const Tensor& eps = ctx->input(2);
    OP_REQUIRES(ctx, cp.dims() == 2, absl::InvalidArgumentError("c_prev must be (units, batch)"));
    const int64_t u = cp.dim_size(0), b = cp.dim_size(1), n = u * b;
    OP_REQUIRES(ctx, z.dims() == 2 && z.dim_size(0) == 4 * u && z.dim_size(1) == b,
                absl::InvalidArgumentError("z must be (4 * units, batch)"));
    OP_REQUIRES(ctx, eps.NumElements() == 0 || eps.NumElements() == n,
                absl::InvalidArgumentError("eps must be empty or (units, batch)"));
    Tensor *h, *c, *act;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, cp.shape(), &h));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, cp.shape(), &c));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({5 * u, b}), &act));
    const float* zp = z.flat<float>().data();
    float* ap = act->flat<float>().data();
    Arr i(ap, n), f(ap + n, n), g(ap + 2 * n, n), o(ap + 3 * n, n), tc(ap + 4 * n, n);
    i = CArr(zp, n).logistic();
    f = CArr(zp + n, n).logistic();
    g = CArr(zp + 2 * n, n).tanh();
    o = CArr(zp + 3 * n, n).logistic();
    Arr cn(c->flat<float>().data(), n);
    cn = f * CArr(cp.flat<float>().data(), n) + i * g;
    if (eps.NumElements() != 0) cn += CArr(eps.flat<float>().data(), n);
    tc = cn.tanh();
    Arr(h->flat<float>().data(), n) = o * tc;
  }
};

class SeqvgLstmCellGradOp : public OpKernel {
 public:
  explicit SeqvgLstmCellGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("with_eps", &with_eps_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& act = ctx->input(0);
    const Tensor& cp = ctx->input(1);
    const Tensor& dh = ctx->input(2);
    const Tensor& dc = ctx->input(3);
    const Tensor& dact = ctx->input(4);
    OP_REQUIRES(ctx, cp.dims() == 2, absl::InvalidArgumentError("c_prev must be (units, batch)"));
    const int64_t u = cp.dim_size(0), b = cp.dim_size(1), n = u * b;
    OP_REQUIRES(ctx, act.NumElements() == 5 * n && dh.NumElements() == n && dc.NumElements() == n,
                absl::InvalidArgumentError("act must be (5 * units, batch), dh and dc (units, batch)"));
    OP_REQUIRES(ctx, dact.NumElements() == 0 || dact.NumElements() == 5 * n,
                absl::InvalidArgumentError("dact must be empty or (5 * units, batch)"));
    Tensor *dz, *dcp, *deps;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({4 * u, b}), &dz));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, cp.shape(), &dcp));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, with_eps_ ? cp.shape() : TensorShape({0}), &deps));
    const float* ap = act.flat<float>().data();
    CArr i(ap, n), f(ap + n, n), g(ap + 2 * n, n), o(ap + 3 * n, n), tc(ap + 4 * n, n);
    CArr dhv(dh.flat<float>().data(), n), cpv(cp.flat<float>().data(), n);
    float* dzp = dz->flat<float>().data();
    Arr dzi(dzp, n), dzf(dzp + n, n), dzg(dzp + 2 * n, n), dzo(dzp + 3 * n, n);
    // The full dL/dc_t (carried, plus through h = o * tanh(c)) is staged in
    // dc_prev's buffer and scaled by f last.
    Arr dcc(dcp->flat<float>().data(), n);
    dcc = CArr(dc.flat<float>().data(), n) + dhv * o * (1.0f - tc * tc);
    if (dact.NumElements() == 0) {
      dzi = dcc * g * i * (1.0f - i);
      dzf = dcc * cpv * f * (1.0f - f);
      dzg = dcc * i * (1.0f - g * g);
      dzo = dhv * tc * o * (1.0f - o);
    } else {
      const float* dp = dact.flat<float>().data();
      dcc += CArr(dp + 4 * n, n) * (1.0f - tc * tc);
      dzi = (dcc * g + CArr(dp, n)) * i * (1.0f - i);
      dzf = (dcc * cpv + CArr(dp + n, n)) * f * (1.0f - f);
      dzg = (dcc * i + CArr(dp + 2 * n, n)) * (1.0f - g * g);
      dzo = (dhv * tc + CArr(dp + 3 * n, n)) * o * (1.0f - o);
    }
    if (with_eps_) Arr(deps->flat<float>().data(), n) = dcc;
    dcc *= f;
  }

 private:
  bool with_eps_;
};

// The probe's (T,) squared norms of T gradient tensors, summed in double: a
// float32 gradient of 1e-25 squares to 0 in float32 though it is not zero.
// One pass over each tensor, instead of TensorFlow's stack, cast, square and
// sum over a (T, u, B) float64 copy (7 of a probe's 44 ms at T=200).
REGISTER_OP("SeqvgSquaredNorms")
    .Input("x: N * float")
    .Attr("N: int >= 1")
    .Output("sq: double")
    .SetShapeFn([](InferenceContext* ctx) {
      ctx->set_output(0, ctx->Vector(ctx->num_inputs()));
      return absl::OkStatus();
    });

class SeqvgSquaredNormsOp : public OpKernel {
 public:
  explicit SeqvgSquaredNormsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const int n = ctx->num_inputs();
    Tensor* sq;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({n}), &sq));
    double* out = sq->flat<double>().data();
    for (int k = 0; k < n; ++k) {
      const Tensor& x = ctx->input(k);
      out[k] = CArr(x.flat<float>().data(), x.NumElements()).cast<double>().square().sum();
    }
  }
};

REGISTER_KERNEL_BUILDER(Name("SeqvgSquaredNorms").Device(tensorflow::DEVICE_CPU), SeqvgSquaredNormsOp);
REGISTER_KERNEL_BUILDER(Name("SeqvgLstmCell").Device(tensorflow::DEVICE_CPU), SeqvgLstmCellOp);
REGISTER_KERNEL_BUILDER(Name("SeqvgLstmCellGrad").Device(tensorflow::DEVICE_CPU), SeqvgLstmCellGradOp);

// ---- The whole sequence as one op: seqvg's LSTM training loop ----
//
// Per timestep, even with the fused cell above, TensorFlow runs a matmul and
// a cell op forward and three ops backward, and the weight gradient is a sum
// of T matmul outputs; each op pays the executor's cost and oneDNN's
// threading for a (4u x u+d+1) @ (u+d+1 x B) product. Here the whole loop,
// forward and backward, is one op each. The units are split into V blocks,
// V fixed by u alone; P threads (up to TensorFlow's intra-op thread count)
// each own V/P blocks, run each block's rows of every step's matmul
// single-threaded with Eigen, and meet once per step at a spin barrier; the
// weight gradient accumulates in each block's own rows.
//
// Why blocks and not simply u/P units per thread: the backward products sum
// over the 4u gate rows, which are laid out block by block. Were the layout
// cut by thread, the order of those float sums would depend on the thread
// count, and so would the run's numbers (a run in a study with --workers 2
// would differ from the same run alone). With a layout fixed by u, each
// thread count computes the same sums in the same order: a thread's matmul
// covers its blocks' rows, and Eigen's GEMM gives each row the same result
// whichever rows it is computed with, as long as there are at least two
// (one row is a matrix-vector product, summed in another order), hence
// blocks of at least two units (tests/test_determinism.py).

namespace seqlstm {

using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MMap = Eigen::Map<Mat>;
using CMMap = Eigen::Map<const Mat>;
using AMap = Eigen::Map<Eigen::ArrayXf>;
using CAMap = Eigen::Map<const Eigen::ArrayXf>;

// Sizes. Each of the V blocks holds U/V units: their rows of the gates, of
// the states and of the caches. Each of the P threads owns V/P consecutive
// blocks, so that a step needs one barrier.
struct Dims {
  int64_t T, B, N, U, V, P;
  int64_t K() const { return U + N + 1; }  // rows of s_t = [h; x_t; 1]
  int64_t up() const { return U / V; }      // units per block
  int64_t gp() const { return 4 * U / V; }  // gate rows per block
  int64_t nb() const { return V / P; }      // blocks per thread
};

// Blocks of u units: the most, up to kMaxBlocks, that divide u evenly into
// blocks of at least two units. Fixed by u alone (never by the thread count):
// it decides the order of the sums.
constexpr int64_t kMaxBlocks = 12;
inline int64_t Blocks(int64_t u) {
  int64_t v = std::max<int64_t>(1, std::min(kMaxBlocks, u / 2));
  while (u % v != 0) --v;
  return v;
}

// Spins until done() holds, yielding the core after a while (an
// oversubscribed machine).
template <typename Done>
inline void SpinUntil(Done done) {
  for (int spins = 0; !done(); ++spins) {
    if (spins > 2000) std::this_thread::yield(); else SEQVG_PAUSE();
  }
}

// A spin barrier for P threads that each have a core; yields if it waits long
// (an oversubscribed machine).
class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void Wait() {
    const int gen = gen_.load(std::memory_order_acquire);
    if (count_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
      count_.store(0, std::memory_order_relaxed);
      gen_.fetch_add(1, std::memory_order_acq_rel);
      return;
    }
    SpinUntil([&] { return gen_.load(std::memory_order_acquire) != gen; });
  }
 private:
  const int n_;
  std::atomic<int> count_{0};
  std::atomic<int> gen_{0};
};

// Runs a closure on another thread (TensorFlow's intra-op pool).
using Scheduler = std::function<void(std::function<void()>)>;

// f(p) for p in [0, P), the caller being p = 0 and the others scheduled on
// the pool; all P must run at once (they meet at barriers), so P is at most
// the pool's size. The helpers run with the caller's floating-point
// environment: TensorFlow flushes denormals, which vanishing gradients
// produce in numbers (unflushed, a step measured 5x slower).
inline void Parallel(int P, const Scheduler& schedule, const std::function<void(int)>& f) {
  if (P == 1) { f(0); return; }
  std::fenv_t env;
  std::fegetenv(&env);
  std::atomic<int> running{P - 1};
  for (int p = 1; p < P; ++p)
    schedule([&f, &env, &running, p] {
      std::fenv_t saved;
      std::fegetenv(&saved);
      std::fesetenv(&env);
      f(p);
      std::fesetenv(&saved);
      running.fetch_sub(1, std::memory_order_acq_rel);
    });
  f(0);
  SpinUntil([&] { return running.load(std::memory_order_acquire) == 0; });
}

// Keras's gate column of row r of the block-major W: block p holds gates
// [i, f, g, o] of units [p*up, (p+1)*up).
inline int64_t KerasColumn(const Dims& d, int64_t r) {
  const int64_t p = r / d.gp(), g = (r % d.gp()) / d.up(), k = r % d.up();
  return g * d.U + p * d.up() + k;
}

// w (4U, K): the block-major transposed [R; W; b], so that w @ s_t is z_t.
inline void PackWeights(const Dims& d, const float* kernel, const float* recurrent, const float* bias, float* w) {
  const int64_t K = d.K(), G = 4 * d.U;
  for (int64_t r = 0; r < G; ++r) {
    const int64_t j = KerasColumn(d, r);
    float* row = w + r * K;
    for (int64_t k = 0; k < d.U; ++k) row[k] = recurrent[k * G + j];
    for (int64_t n = 0; n < d.N; ++n) row[d.U + n] = kernel[n * G + j];
    row[K - 1] = bias[j];
  }
}

// dw (4U, K) block-major back to Keras's (N, 4U), (U, 4U), (4U).
inline void UnpackGrad(const Dims& d, const float* dw, float* dkernel, float* drecurrent, float* dbias) {
  const int64_t K = d.K(), G = 4 * d.U;
  for (int64_t r = 0; r < G; ++r) {
    const int64_t j = KerasColumn(d, r);
    const float* row = dw + r * K;
    for (int64_t k = 0; k < d.U; ++k) drecurrent[k * G + j] = row[k];
    for (int64_t n = 0; n < d.N; ++n) dkernel[n * G + j] = row[d.U + n];
    dbias[j] = row[K - 1];
  }
}

// Forward over all T steps.
//   x (B, T, N), h0 and c0 (B, U), w (4U, K) from PackWeights.
//   s (T+1, K, B): s_t = [h_t; x_t; 1] transposed (h_0 = h0); c (T+1, U, B);
//   act (T, 5U, B): per block v, rows [i, f, g, o, tanh c] of its units.
inline void Forward(const Dims& d, const Scheduler& schedule, const float* x, const float* h0, const float* c0, const float* w,
                    float* s, float* c, float* act) {
  const int64_t T = d.T, B = d.B, N = d.N, U = d.U, K = d.K(), up = d.up(), gp = d.gp(), n = up * B;
  for (int64_t t = 0; t <= T; ++t) {
    float* st = s + t * K * B;
    for (int64_t k = 0; k < N; ++k)
      for (int64_t b = 0; b < B; ++b) st[(U + k) * B + b] = t < T ? x[(b * T + t) * N + k] : 0.f;
    std::fill(st + (K - 1) * B, st + K * B, 1.f);
  }
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < U; ++k) { s[k * B + b] = h0[b * U + k]; c[k * B + b] = c0[b * U + k]; }
  Barrier barrier(d.P);
  Parallel(d.P, schedule, [&](int p) {
    const int64_t nb = d.nb(), v0 = p * nb;
    CMMap wp(w + v0 * gp * K, nb * gp, K);  // this thread's blocks' rows
    Mat z(nb * gp, B);
    for (int64_t t = 0; t < T; ++t) {
      z.noalias() = wp * CMMap(s + t * K * B, K, B);
      for (int64_t v = v0; v < v0 + nb; ++v) {
        const float* zp = z.data() + (v - v0) * gp * B;
        float* a = act + (t * 5 * U + v * 5 * up) * B;
        AMap i(a, n), f(a + n, n), g(a + 2 * n, n), o(a + 3 * n, n), tc(a + 4 * n, n);
        i = CAMap(zp, n).logistic();
        f = CAMap(zp + n, n).logistic();
        g = CAMap(zp + 2 * n, n).tanh();
        o = CAMap(zp + 3 * n, n).logistic();
        AMap cn(c + ((t + 1) * U + v * up) * B, n);
        cn = f * CAMap(c + (t * U + v * up) * B, n) + i * g;
        tc = cn.tanh();
        AMap(s + ((t + 1) * K + v * up) * B, n) = o * tc;
      }
      barrier.Wait();  // h_{t+1} whole before anyone's next matmul
    }
  });
}

// Backward over all T steps, from the forward's s, c, act.
//   dh_seq (B, T, U) or null: dL/d(h_t) through the returned sequence;
//   dh_last, dc_last (B, U): through the returned final states.
//   Out: dx (B, T, N), dh0 and dc0 (B, U), dw (4U, K) as w.
inline void Backward(const Dims& d, const Scheduler& schedule, const float* w, const float* s, const float* c, const float* act,
                     const float* dh_seq, const float* dh_last, const float* dc_last,
                     float* dx, float* dh0, float* dc0, float* dw) {
  const int64_t T = d.T, B = d.B, N = d.N, U = d.U, K = d.K(), up = d.up(), gp = d.gp(), n = up * B;
  const int P = static_cast<int>(d.P);
  const Mat wt = CMMap(w, 4 * U, K).transpose();  // (K, 4U): ds_t = wt @ dz_t
  Mat dz_buf(2 * 4 * U, B);                         // dz_t, double-buffered across steps
  Barrier barrier(P);
  Parallel(P, schedule, [&](int p) {
    // This thread's blocks v0..v0+nb-1 hold units [u0, u0 + nb*up) and gate
    // rows [g0, g0 + nb*gp), consecutive in the block-major layout.
    const int64_t nb = d.nb(), v0 = p * nb, u0 = v0 * up, g0 = v0 * gp;
    Mat dh(nb * up, B), dc(nb * up, B), dwp = Mat::Zero(nb * gp, K), dxt(N, B);
    for (int64_t k = 0; k < nb * up; ++k)
      for (int64_t b = 0; b < B; ++b) {
        dh(k, b) = dh_last[b * U + u0 + k];
        dc(k, b) = dc_last[b * U + u0 + k];
      }
    for (int64_t t = T - 1; t >= 0; --t) {
      if (dh_seq != nullptr)
        for (int64_t k = 0; k < nb * up; ++k)
          for (int64_t b = 0; b < B; ++b) dh(k, b) += dh_seq[(b * T + t) * U + u0 + k];
      float* dz = dz_buf.data() + ((t % 2) * 4 * U + g0) * B;
      for (int64_t j = 0; j < nb; ++j) {
        const float* a = act + (t * 5 * U + (v0 + j) * 5 * up) * B;
        CAMap i(a, n), f(a + n, n), g(a + 2 * n, n), o(a + 3 * n, n), tc(a + 4 * n, n);
        AMap dhv(dh.data() + j * n, n), dcv(dc.data() + j * n, n);
        float* dzj = dz + j * gp * B;
        dcv += dhv * o * (1.f - tc * tc);  // the total dL/dc_t
        AMap(dzj, n) = dcv * g * i * (1.f - i);
        AMap(dzj + n, n) = dcv * CAMap(c + (t * U + u0 + j * up) * B, n) * f * (1.f - f);
        AMap(dzj + 2 * n, n) = dcv * i * (1.f - g * g);
        AMap(dzj + 3 * n, n) = dhv * tc * o * (1.f - o);
        dcv *= f;
      }
      barrier.Wait();  // dz_t whole before anyone's matmul
      CMMap dzt(dz_buf.data() + (t % 2) * 4 * U * B, 4 * U, B);
      dh.noalias() = wt.middleRows(u0, nb * up) * dzt;
      dwp.noalias() += CMMap(dz, nb * gp, B) * CMMap(s + t * K * B, K, B).transpose();
      if (p == P - 1) {
        dxt.noalias() = wt.middleRows(U, N) * dzt;
        for (int64_t k = 0; k < N; ++k)
          for (int64_t b = 0; b < B; ++b) dx[(b * T + t) * N + k] = dxt(k, b);
      }
    }
    for (int64_t k = 0; k < nb * up; ++k)
      for (int64_t b = 0; b < B; ++b) {
        dh0[b * U + u0 + k] = dh(k, b);
        dc0[b * U + u0 + k] = dc(k, b);
      }
    MMap(dw + g0 * K, nb * gp, K) = dwp;
  });
}

}  // namespace seqlstm

namespace {

// Threads: the most that divide the v blocks evenly, at most max_threads
// (when > 0) and at most TensorFlow's intra-op pool size: the caller runs
// thread 0 and the pool the others, and all must run at once (they meet at
// barriers); more threads than the pool has would wait on each other forever.
int Threads(OpKernelContext* ctx, int64_t v, int max_threads) {
  const int pool = ctx->device()->tensorflow_cpu_worker_threads()->num_threads;
  int p = max_threads > 0 ? std::min(max_threads, pool) : pool;
  p = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(p, v)));
  while (v % p != 0) --p;
  return p;
}

seqlstm::Scheduler PoolScheduler(OpKernelContext* ctx) {
  auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  return [pool](std::function<void()> fn) { pool->Schedule(std::move(fn)); };
}

const float* Data(const Tensor& t) { return t.flat<float>().data(); }
float* Data(Tensor* t) { return t->flat<float>().data(); }

}  // namespace

// x (B, T, d); h0, c0 (B, u); kernel (d, 4u), recurrent (u, 4u), bias (4u),
// Keras's layout and gate order. Outputs: h_seq (B, T, u) with
// return_sequences, else (B, 0, u); h_T and c_T (B, u); then what the
// gradient reads: blocks, w (4u, K), s (T+1, K, B), c (T+1, u, B), act
// (T, 5u, B), K = u + d + 1.
REGISTER_OP("SeqvgLstmSeq")
    .Input("x: float")
    .Input("h0: float")
    .Input("c0: float")
    .Input("kernel: float")
    .Input("recurrent: float")
    .Input("bias: float")
    .Attr("return_sequences: bool = false")
    .Attr("max_threads: int = 0")
    .Output("h_seq: float")
    .Output("h_last: float")
    .Output("c_last: float")
    .Output("blocks: int32")
    .Output("w: float")
    .Output("s: float")
    .Output("c: float")
    .Output("act: float")
    .SetShapeFn([](InferenceContext* ctx) {
      ShapeHandle x, h0;
      bool seq;
      TF_RETURN_IF_ERROR(ctx->GetAttr("return_sequences", &seq));
      TF_RETURN_IF_ERROR(ctx->WithRank(ctx->input(0), 3, &x));
      TF_RETURN_IF_ERROR(ctx->WithRank(ctx->input(1), 2, &h0));
      DimensionHandle b = ctx->Dim(x, 0), t = ctx->Dim(x, 1), u = ctx->Dim(h0, 1);
      ctx->set_output(0, ctx->MakeShape({b, seq ? t : ctx->MakeDim(0), u}));
      ctx->set_output(1, h0);
      ctx->set_output(2, h0);
      ctx->set_output(3, ctx->Scalar());
      for (int k = 4; k < 8; ++k) ctx->set_output(k, ctx->UnknownShape());
      return absl::OkStatus();
    });

// dh_seq is (B, T, u), or empty when nothing reads the sequence.
REGISTER_OP("SeqvgLstmSeqGrad")
    .Input("blocks: int32")
    .Input("w: float")
    .Input("s: float")
    .Input("c: float")
    .Input("act: float")
    .Input("dh_seq: float")
    .Input("dh_last: float")
    .Input("dc_last: float")
    .Output("dx: float")
    .Output("dh0: float")
    .Output("dc0: float")
    .Output("dkernel: float")
    .Output("drecurrent: float")
    .Output("dbias: float")
    .SetShapeFn([](InferenceContext* ctx) {
      ShapeHandle h;
      TF_RETURN_IF_ERROR(ctx->WithRank(ctx->input(6), 2, &h));
      ctx->set_output(0, ctx->UnknownShapeOfRank(3));
      ctx->set_output(1, h);
      ctx->set_output(2, h);
      ctx->set_output(3, ctx->UnknownShapeOfRank(2));
      ctx->set_output(4, ctx->UnknownShapeOfRank(2));
      ctx->set_output(5, ctx->UnknownShapeOfRank(1));
      return absl::OkStatus();
    });

class SeqvgLstmSeqOp : public OpKernel {
 public:
  explicit SeqvgLstmSeqOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("return_sequences", &seq_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("max_threads", &max_threads_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor &x = ctx->input(0), &h0 = ctx->input(1), &c0 = ctx->input(2);
    const Tensor &kernel = ctx->input(3), &recurrent = ctx->input(4), &bias = ctx->input(5);
    OP_REQUIRES(ctx, x.dims() == 3, absl::InvalidArgumentError("x must be (batch, T, features)"));
    const int64_t B = x.dim_size(0), T = x.dim_size(1), N = x.dim_size(2);
    OP_REQUIRES(ctx, recurrent.dims() == 2 && recurrent.dim_size(1) == 4 * recurrent.dim_size(0),
                absl::InvalidArgumentError("recurrent must be (units, 4 * units)"));
    const int64_t U = recurrent.dim_size(0);
    OP_REQUIRES(ctx, kernel.dims() == 2 && kernel.dim_size(0) == N && kernel.dim_size(1) == 4 * U &&
                         bias.dims() == 1 && bias.dim_size(0) == 4 * U,
                absl::InvalidArgumentError("kernel must be (features, 4 * units), bias (4 * units)"));
    OP_REQUIRES(ctx, h0.dims() == 2 && h0.dim_size(0) == B && h0.dim_size(1) == U && c0.shape() == h0.shape(),
                absl::InvalidArgumentError("h0 and c0 must be (batch, units)"));
    const int64_t V = seqlstm::Blocks(U);
    const seqlstm::Dims d{T, B, N, U, V, Threads(ctx, V, max_threads_)};
    Tensor *h_seq, *h_last, *c_last, *blocks, *w, *s, *c, *act;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({B, seq_ ? T : 0, U}), &h_seq));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, h0.shape(), &h_last));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, h0.shape(), &c_last));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({}), &blocks));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(4, TensorShape({4 * U, d.K()}), &w));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(5, TensorShape({T + 1, d.K(), B}), &s));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(6, TensorShape({T + 1, U, B}), &c));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(7, TensorShape({T, 5 * U, B}), &act));
    blocks->scalar<int32_t>()() = static_cast<int32_t>(d.V);
    seqlstm::PackWeights(d, Data(kernel), Data(recurrent), Data(bias), Data(w));
    seqlstm::Forward(d, PoolScheduler(ctx), Data(x), Data(h0), Data(c0), Data(w), Data(s), Data(c), Data(act));
    const float *sp = Data(*s), *cp = Data(*c);
    float *hl = Data(h_last), *cl = Data(c_last), *hs = Data(h_seq);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t k = 0; k < U; ++k) {
        hl[b * U + k] = sp[(T * d.K() + k) * B + b];
        cl[b * U + k] = cp[(T * U + k) * B + b];
      }
    if (seq_)
      for (int64_t b = 0; b < B; ++b)
        for (int64_t t = 0; t < T; ++t)
          for (int64_t k = 0; k < U; ++k) hs[(b * T + t) * U + k] = sp[((t + 1) * d.K() + k) * B + b];
  }

 private:
  bool seq_;
  int max_threads_;
};

class SeqvgLstmSeqGradOp : public OpKernel {
 public:
  explicit SeqvgLstmSeqGradOp(OpKernelConstruction* ctx) : OpKernel(ctx) {}

  void Compute(OpKernelContext* ctx) override {
    const Tensor &blocks = ctx->input(0), &w = ctx->input(1), &s = ctx->input(2), &c = ctx->input(3);
    const Tensor &act = ctx->input(4), &dh_seq = ctx->input(5), &dh_last = ctx->input(6),
                 &dc_last = ctx->input(7);
    OP_REQUIRES(ctx, s.dims() == 3 && c.dims() == 3 && w.dims() == 2 && dh_last.dims() == 2,
                absl::InvalidArgumentError("the forward op's s, c, w and a (batch, units) dh_last"));
    const int64_t T = s.dim_size(0) - 1, K = s.dim_size(1), B = s.dim_size(2), U = c.dim_size(1);
    const int64_t V = blocks.scalar<int32_t>()();
    OP_REQUIRES(ctx, V >= 1 && U % V == 0, absl::InvalidArgumentError("blocks must divide units"));
    const seqlstm::Dims d{T, B, K - U - 1, U, V, Threads(ctx, V, 0)};
    OP_REQUIRES(ctx, w.dim_size(0) == 4 * U && w.dim_size(1) == K &&
                         act.NumElements() == T * 5 * U * B && dh_last.dim_size(0) == B &&
                         dh_last.dim_size(1) == U && dc_last.shape() == dh_last.shape() &&
                         (dh_seq.NumElements() == 0 || dh_seq.NumElements() == B * T * U),
                absl::InvalidArgumentError("inconsistent shapes: not the forward op's outputs"));
    Tensor *dx, *dh0, *dc0, *dkernel, *drecurrent, *dbias;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({B, T, d.N}), &dx));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, dh_last.shape(), &dh0));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, dh_last.shape(), &dc0));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({d.N, 4 * U}), &dkernel));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(4, TensorShape({U, 4 * U}), &drecurrent));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(5, TensorShape({4 * U}), &dbias));
    std::vector<float> dw(4 * U * K);
    seqlstm::Backward(d, PoolScheduler(ctx), Data(w), Data(s), Data(c), Data(act),
                      dh_seq.NumElements() == 0 ? nullptr : Data(dh_seq), Data(dh_last), Data(dc_last),
                      Data(dx), Data(dh0), Data(dc0), dw.data());
    seqlstm::UnpackGrad(d, dw.data(), Data(dkernel), Data(drecurrent), Data(dbias));
  }
};

REGISTER_KERNEL_BUILDER(Name("SeqvgLstmSeq").Device(tensorflow::DEVICE_CPU), SeqvgLstmSeqOp);
REGISTER_KERNEL_BUILDER(Name("SeqvgLstmSeqGrad").Device(tensorflow::DEVICE_CPU), SeqvgLstmSeqGradOp);
