// seqvg's recurrent sequence ops for TensorFlow on a CPU, built and loaded by
// seqvg/kernels.py, which registers their gradients:
//   SeqvgLstmSeq / SeqvgLstmSeqGrad: the whole sequence, forward and
//     backward, one op each; the LSTM training loop (seqvg/fastlstm.py)
//     and, with its taps, the gradient probe's (seqvg/probe.py).
//   SeqvgGruSeq / SeqvgGruSeqGrad: the same for Keras's GRU.
//   SeqvgRnnSeq / SeqvgRnnSeqGrad: the same for Keras's tanh SimpleRNN
//     (the probe's only; training keeps Keras's loop).
//   SeqvgStepSigma: the step Jacobian's spectral norm per sample, and
//   SeqvgGateStats: the gates' per-step mean and percentiles, read in place
//     from a sequence op's cache, for seqvg.why's statistics
//     (seqvg/stepstats.py).
// Tests: tests/test_kernels.py (against TF ops, Keras's LSTM loop and numpy).
//
// Layout is transposed, (rows, batch) row-major, as in seqvg/fastlstm.py:
//   z       (4u, B) gate pre-activations, row blocks [i, f, g, o] (Keras order)
//   c_prev  (u, B)
//   h = o * tanh(c),  c = f * c_prev + i * g
//   act     (5u, B) the cached [i, f, g, o, tanh(c)] the gradient reads
//
// The activations are Eigen's (logistic, tanh): the functions TensorFlow's
// own Sigmoid and Tanh kernels evaluate, so the results match Keras's.
#include <algorithm>
#include <array>
#include <atomic>
#include <cfenv>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <thread>
#include <vector>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SEQVG_PAUSE() _mm_pause()
#else
#define SEQVG_PAUSE() std::this_thread::yield()
#endif
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#endif

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "Eigen/Eigenvalues"
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

}  // namespace

// ---- The LSTM cell's maths, one step (the sequence op's) ----
namespace lstmcell {

using Arr = Eigen::Map<Eigen::ArrayXf>;
using CArr = Eigen::Map<const Eigen::ArrayXf>;

// One step over n = units * batch elements. z: rows [i, f, g, o] of n each;
// eps: null, or the perturbation added to c_t. Writes act [i, f, g, o,
// tanh(c)] (5 rows of n), c and h.
inline void Forward(int64_t n, const float* z, const float* c_prev, const float* eps, float* act, float* c,
                    float* h) {
  Arr i(act, n), f(act + n, n), g(act + 2 * n, n), o(act + 3 * n, n), tc(act + 4 * n, n);
  i = CArr(z, n).logistic();
  f = CArr(z + n, n).logistic();
  g = CArr(z + 2 * n, n).tanh();
  o = CArr(z + 3 * n, n).logistic();
  Arr cn(c, n);
  cn = f * CArr(c_prev, n) + i * g;
  if (eps != nullptr) cn += CArr(eps, n);
  tc = cn.tanh();
  Arr(h, n) = o * tc;
}

// Its backward, where nothing but the gradient reads act. dc holds the
// gradient carried into c_t on entry and dL/dc_{t-1} on return; dz gets the
// 4 rows of dL/dz; d_eps (or null) the total dL/dc_t (carried, and through
// h = o * tanh(c)).
// dc_sq (or null) gets the squared norm of that total, summed in double (the
// gradient probe's, see the sequence op).
inline void Backward(int64_t n, const float* act, const float* c_prev, const float* dh, float* dc, float* dz,
                     float* d_eps, double* dc_sq = nullptr) {
  CArr i(act, n), f(act + n, n), g(act + 2 * n, n), o(act + 3 * n, n), tc(act + 4 * n, n);
  CArr dhv(dh, n);
  Arr dcv(dc, n);
  dcv += dhv * o * (1.f - tc * tc);  // the total dL/dc_t
  Arr(dz, n) = dcv * g * i * (1.f - i);
  Arr(dz + n, n) = dcv * CArr(c_prev, n) * f * (1.f - f);
  Arr(dz + 2 * n, n) = dcv * i * (1.f - g * g);
  Arr(dz + 3 * n, n) = dhv * tc * o * (1.f - o);
  if (d_eps != nullptr) Arr(d_eps, n) = dcv;
  if (dc_sq != nullptr) *dc_sq = dcv.cast<double>().square().sum();
  dcv *= f;
}

}  // namespace lstmcell

// ---- The GRU cell's maths (Keras's GRUCell with reset_after=True) ----
//
//   z = sigmoid(x W_z + b_z + h R_z + b'_z), r = likewise with _r,
//   hh = tanh(x W_h + b_h + r * (h R_h + b'_h)),  h_t = z * h_{t-1} + (1 - z) * hh
// (b the input bias, b' the recurrent one). z and r read [h; x_t; 1] whole;
// the candidate's two parts are apart, since r scales only the recurrent one.
namespace grucell {

using Arr = Eigen::Map<Eigen::ArrayXf>;
using CArr = Eigen::Map<const Eigen::ArrayXf>;

// One step over n = units * batch elements. zm: rows [z, r, hr] of n each,
// the pre-activations of z and r and hr = h R_h + b'_h; zx: x W_h + b_h.
// Writes act [z, r, hh, hr] (4 rows of n) and h.
inline void Forward(int64_t n, const float* zm, const float* zx, const float* h_prev, float* act, float* h) {
  Arr z(act, n), r(act + n, n), hh(act + 2 * n, n), hr(act + 3 * n, n);
  z = CArr(zm, n).logistic();
  r = CArr(zm + n, n).logistic();
  hr = CArr(zm + 2 * n, n);
  hh = (CArr(zx, n) + r * hr).tanh();
  Arr(h, n) = z * CArr(h_prev, n) + (1.f - z) * hh;
}

// Its backward from dh, the total dL/dh_t: dm gets the 3 rows of dL/d[z, r,
// hr] pre-activations, dzx dL/d(x W_h + b_h), and carry dh * z, the part of
// dL/dh_{t-1} that does not pass through the matmul.
inline void Backward(int64_t n, const float* act, const float* h_prev, const float* dh, float* carry, float* dm,
                     float* dzx) {
  CArr z(act, n), r(act + n, n), hh(act + 2 * n, n), hr(act + 3 * n, n), dhv(dh, n);
  Arr da(dzx, n);
  da = dhv * (1.f - z) * (1.f - hh * hh);
  Arr(dm, n) = dhv * (CArr(h_prev, n) - hh) * z * (1.f - z);
  Arr(dm + n, n) = da * hr * r * (1.f - r);
  Arr(dm + 2 * n, n) = da * r;
  Arr(carry, n) = dhv * z;
}

}  // namespace grucell

// ---- The whole sequence as one op: seqvg's LSTM and GRU training loops ----
//
// Per timestep, even with the fused cell above, TensorFlow runs a matmul and
// a cell op forward and three ops backward, and the weight gradient is a sum
// of T matmul outputs; each op pays the executor's cost and oneDNN's
// threading for a (Gu x u+d+1) @ (u+d+1 x B) product. Here the whole loop,
// forward and backward, is one op each. The units are split into V blocks,
// V fixed by u alone; P threads (up to TensorFlow's intra-op thread count)
// each own V/P blocks, run each block's rows of every step's matmul
// single-threaded with Eigen, and meet once per step at a spin barrier; the
// weight gradient accumulates in each block's own rows. The loop (seqrnn) is
// shared; a cell supplies its elementwise step and its weight layout.
//
// Why blocks and not simply u/P units per thread: the backward products sum
// over the Gu gate rows, which are laid out block by block. Were the layout
// cut by thread, the order of those float sums would depend on the thread
// count, and so would the run's numbers (a run in a study with --workers 2
// would differ from the same run alone). With a layout fixed by u, each
// thread count computes the same sums in the same order: a thread's matmul
// covers its blocks' rows, and Eigen's GEMM gives each row the same result
// whichever rows it is computed with, as long as there are at least two
// (one row is a matrix-vector product, summed in another order), hence
// blocks of at least two units (tests/test_determinism.py). The GRU's
// input-only rows (x W_h + b_h) are computed row by row, always as a
// matrix-vector product, so their order does not depend on the rows either.
//
// The gradient probe (seqvg/probe.py) runs the same ops: an input `taps`
// (T, S) of zeros whose gradient is, per step, the squared norms (summed in
// double) of the total dL/dh_t (and dL/dc_t for the LSTM), taken where the
// backward loop holds them; each block sums its own units, and the blocks'
// sums are added in block order, so they too are thread-count independent.
// `weight_grad=false` skips the weight gradient, which the probe never reads
// (its weight outputs are then zeros).

namespace seqrnn {

using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MMap = Eigen::Map<Mat>;
using CMMap = Eigen::Map<const Mat>;

// Sizes. Each of the V blocks holds U/V units: their rows of the gates, of
// the states and of the caches. Each of the P threads owns V/P consecutive
// blocks, so that a step needs one barrier. G rows per unit read s_t = [h;
// x_t; 1] (LSTM 4, GRU 3), X rows per unit read only [x_t; 1] (GRU 1).
struct Dims {
  int64_t T, B, N, U, V, P, G, X;
  int64_t K() const { return U + N + 1; }   // rows of s_t = [h; x_t; 1]
  int64_t Kx() const { return N + 1; }      // rows of [x_t; 1]
  int64_t up() const { return U / V; }      // units per block
  int64_t gp() const { return G * U / V; }  // gate rows per block
  int64_t xp() const { return X * U / V; }  // input-only rows per block
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

// Sleeps while *a == expected (Linux: a futex, woken by WakeAll); elsewhere
// yields once.
inline void SleepWhile(std::atomic<int>* a, int expected) {
#if defined(__linux__)
  static_assert(sizeof(std::atomic<int>) == sizeof(int), "a futex is an int");
  syscall(SYS_futex, reinterpret_cast<int*>(a), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
#else
  (void)a;
  (void)expected;
  std::this_thread::yield();
#endif
}

inline void WakeAll(std::atomic<int>* a) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<int*>(a), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
#else
  (void)a;
#endif
}

// A barrier for P threads. A waiting thread spins a short while (on an idle
// machine its partners arrive within microseconds, and a sleep would cost
// more than the wait), then sleeps until the last one arrives: on a loaded
// machine a spinning thread would hold a core the late one needs (two
// threads ran at 0.37x one thread at load ~10 when waiters only spun and
// yielded). Sleeping changes only when a thread runs, never what it
// computes.
class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void Wait() {
    const int gen = gen_.load(std::memory_order_acquire);
    if (count_.fetch_add(1, std::memory_order_acq_rel) == n_ - 1) {
      count_.store(0, std::memory_order_relaxed);
      gen_.fetch_add(1, std::memory_order_seq_cst);
      // seq_cst pairs with the sleepers' increment: a sleeper counted after
      // this load sees the new generation in its futex call and returns.
      if (sleepers_.load(std::memory_order_seq_cst) > 0) WakeAll(&gen_);
      return;
    }
    for (int spins = 0; spins < kSpins; ++spins) {
      if (gen_.load(std::memory_order_acquire) != gen) return;
      SEQVG_PAUSE();
    }
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    while (gen_.load(std::memory_order_seq_cst) == gen) SleepWhile(&gen_, gen);
    sleepers_.fetch_sub(1, std::memory_order_acq_rel);
  }

 private:
  static constexpr int kSpins = 2000;
  const int n_;
  std::atomic<int> count_{0};
  std::atomic<int> gen_{0};
  std::atomic<int> sleepers_{0};
};

// Runs a closure on another thread (TensorFlow's intra-op pool).
using Scheduler = std::function<void(std::function<void()>)>;

// f(p) for p in [0, P), the caller being p = 0 and the others scheduled on
// the pool; all P must run at once (they meet at barriers), so P is at most
// the pool's size. The helpers run with the caller's floating-point
// environment: TensorFlow flushes denormals, which vanishing gradients
// produce in numbers and which are many times slower unflushed.
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
// 0..G-1 of units [p*up, (p+1)*up).
inline int64_t KerasColumn(const Dims& d, int64_t r) {
  const int64_t p = r / d.gp(), g = (r % d.gp()) / d.up(), k = r % d.up();
  return g * d.U + p * d.up() + k;
}

// s (T+1, K, B): x_t transposed and the ones row for every t, h0 as s_0's h.
inline void FillInputs(const Dims& d, const float* x, const float* h0, float* s) {
  const int64_t T = d.T, B = d.B, N = d.N, U = d.U, K = d.K();
  for (int64_t t = 0; t <= T; ++t) {
    float* st = s + t * K * B;
    for (int64_t k = 0; k < N; ++k)
      for (int64_t b = 0; b < B; ++b) st[(U + k) * B + b] = t < T ? x[(b * T + t) * N + k] : 0.f;
    std::fill(st + (K - 1) * B, st + K * B, 1.f);
  }
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < U; ++k) s[k * B + b] = h0[b * U + k];
}

// h_T (B, U) and, when h_seq is not null, every h_t (B, T, U) from s.
inline void Outputs(const Dims& d, const float* s, float* h_last, float* h_seq) {
  const int64_t T = d.T, B = d.B, U = d.U, K = d.K();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < U; ++k) h_last[b * U + k] = s[(T * K + k) * B + b];
  if (h_seq != nullptr)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t k = 0; k < U; ++k) h_seq[(b * T + t) * U + k] = s[((t + 1) * K + k) * B + b];
}

// Forward over all T steps, s from FillInputs. w (GU, K) block-major, wx
// (XU, Kx) block-major (or null). Per step and block v, step(t, v, zm, zx)
// gets its G*up rows of w @ s_t and X*up rows of wx @ [x_t; 1] (or null) and
// writes the block's rows of h_{t+1} into s.
template <typename Step>
inline void Forward(const Dims& d, const Scheduler& schedule, const float* w, const float* wx, const float* s,
                    Step step) {
  const int64_t T = d.T, B = d.B, U = d.U, K = d.K(), Kx = d.Kx(), gp = d.gp(), xp = d.xp();
  Barrier barrier(d.P);
  Parallel(d.P, schedule, [&](int p) {
    const int64_t nb = d.nb(), v0 = p * nb;
    CMMap wp(w + v0 * gp * K, nb * gp, K);  // this thread's blocks' rows
    Mat z(nb * gp, B), zx(nb * xp, B);
    for (int64_t t = 0; t < T; ++t) {
      z.noalias() = wp * CMMap(s + t * K * B, K, B);
      if (xp > 0) {
        CMMap sx(s + (t * K + U) * B, Kx, B);
        for (int64_t k = 0; k < nb * xp; ++k) zx.row(k).noalias() = CMMap(wx + (v0 * xp + k) * Kx, 1, Kx) * sx;
      }
      for (int64_t v = v0; v < v0 + nb; ++v)
        step(t, v, z.data() + (v - v0) * gp * B, xp > 0 ? zx.data() + (v - v0) * xp * B : nullptr);
      barrier.Wait();  // h_{t+1} whole before anyone's next matmul
    }
  });
}

// Backward over all T steps, from the forward's s (and the cell's caches).
//   dh_seq (B, T, U) or null: dL/d(h_t) through the returned sequence;
//   dh_last (B, U): through the returned h_T; carry_last (B, U) or null: the
//   cell's carried gradient at T (the LSTM's dc_T).
// Per step and block v, step(t, v, dh, carry, dz, dzx, sq) gets the total
// dL/dh_t of the block's units, its carried gradient (updated in place),
// writes the block's G*up rows of dL/dz_t and X*up rows of the input-only
// rows' gradient, and, where sq is not null, the S squared norms of the
// probe. With carry_into_h, dL/dh_{t-1} = W_h^T dz_t + carry (the GRU's
// z * dh), else the carry stays the cell's own (the LSTM's c).
// Out: dx (B, T, N), dh0 (B, U), carry0 (B, U) or null; with weight_grad dw
// and dwx as w and wx; sq (T, V, S) where given.
template <typename Step>
inline void Backward(const Dims& d, const Scheduler& schedule, const float* w, const float* wx, const float* s,
                     const float* dh_seq, const float* dh_last, const float* carry_last, bool carry_into_h,
                     bool weight_grad, double* sq, int64_t S, Step step, float* dx, float* dh0, float* carry0,
                     float* dw, float* dwx) {
  const int64_t T = d.T, B = d.B, N = d.N, U = d.U, V = d.V, K = d.K(), Kx = d.Kx();
  const int64_t up = d.up(), gp = d.gp(), xp = d.xp(), n = up * B, GU = d.G * U, XU = d.X * U;
  const int P = static_cast<int>(d.P);
  const Mat wt = CMMap(w, GU, K).transpose();                      // (K, GU): ds_t = wt @ dz_t
  const Mat wxt = XU > 0 ? Mat(CMMap(wx, XU, Kx).transpose()) : Mat();  // (Kx, XU)
  Mat dz_buf(2 * GU, B), dzx_buf(2 * XU, B);                       // double-buffered across steps
  Barrier barrier(P);
  Parallel(P, schedule, [&](int p) {
    // This thread's blocks v0..v0+nb-1 hold units [u0, u0 + nb*up), gate
    // rows [g0, g0 + nb*gp) and input-only rows [x0, x0 + nb*xp),
    // consecutive in the block-major layout.
    const int64_t nb = d.nb(), v0 = p * nb, u0 = v0 * up, g0 = v0 * gp, x0 = v0 * xp;
    Mat dh(nb * up, B), carry(nb * up, B), dxt(N, B);
    Mat dwp = Mat::Zero(weight_grad ? nb * gp : 0, K), dwxp = Mat::Zero(weight_grad ? nb * xp : 0, Kx);
    for (int64_t k = 0; k < nb * up; ++k)
      for (int64_t b = 0; b < B; ++b) {
        dh(k, b) = dh_last[b * U + u0 + k];
        carry(k, b) = carry_last != nullptr ? carry_last[b * U + u0 + k] : 0.f;
      }
    for (int64_t t = T - 1; t >= 0; --t) {
      if (dh_seq != nullptr)
        for (int64_t k = 0; k < nb * up; ++k)
          for (int64_t b = 0; b < B; ++b) dh(k, b) += dh_seq[(b * T + t) * U + u0 + k];
      float* dz = dz_buf.data() + ((t % 2) * GU + g0) * B;
      float* dzx = xp > 0 ? dzx_buf.data() + ((t % 2) * XU + x0) * B : nullptr;
      for (int64_t j = 0; j < nb; ++j)
        step(t, v0 + j, dh.data() + j * n, carry.data() + j * n, dz + j * gp * B,
             dzx != nullptr ? dzx + j * xp * B : nullptr, sq != nullptr ? sq + (t * V + v0 + j) * S : nullptr);
      barrier.Wait();  // dz_t whole before anyone's matmul
      CMMap dzt(dz_buf.data() + (t % 2) * GU * B, GU, B);
      dh.noalias() = wt.middleRows(u0, nb * up) * dzt;
      if (carry_into_h) dh += carry;
      if (weight_grad) {
        dwp.noalias() += CMMap(dz, nb * gp, B) * CMMap(s + t * K * B, K, B).transpose();
        if (xp > 0) {
          CMMap sx(s + (t * K + U) * B, Kx, B);
          for (int64_t k = 0; k < nb * xp; ++k) dwxp.row(k).noalias() += CMMap(dzx + k * B, 1, B) * sx.transpose();
        }
      }
      if (p == P - 1) {
        dxt.noalias() = wt.middleRows(U, N) * dzt;
        if (XU > 0) dxt.noalias() += wxt.topRows(N) * CMMap(dzx_buf.data() + (t % 2) * XU * B, XU, B);
        for (int64_t k = 0; k < N; ++k)
          for (int64_t b = 0; b < B; ++b) dx[(b * T + t) * N + k] = dxt(k, b);
      }
    }
    for (int64_t k = 0; k < nb * up; ++k)
      for (int64_t b = 0; b < B; ++b) {
        dh0[b * U + u0 + k] = dh(k, b);
        if (carry0 != nullptr) carry0[b * U + u0 + k] = carry(k, b);
      }
    if (weight_grad) {
      MMap(dw + g0 * K, nb * gp, K) = dwp;
      if (xp > 0) MMap(dwx + x0 * Kx, nb * xp, Kx) = dwxp;
    }
  });
}

// The probe's (T, S) squared norms from the blocks' (T, V, S), summed in block order.
inline void SumBlocks(const Dims& d, int64_t S, const double* sq, double* out) {
  for (int64_t t = 0; t < d.T; ++t)
    for (int64_t k = 0; k < S; ++k) {
      double total = 0.0;
      for (int64_t v = 0; v < d.V; ++v) total += sq[(t * d.V + v) * S + k];
      out[t * S + k] = total;
    }
}

// ---- LSTM: G = 4 rows [i, f, g, o] per unit, Keras's (d, 4u), (u, 4u), (4u) ----

// w (4U, K): the block-major transposed [R; W; b], so that w @ s_t is z_t.
inline void PackLstm(const Dims& d, const float* kernel, const float* recurrent, const float* bias, float* w) {
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
inline void UnpackLstm(const Dims& d, const float* dw, float* dkernel, float* drecurrent, float* dbias) {
  const int64_t K = d.K(), G = 4 * d.U;
  for (int64_t r = 0; r < G; ++r) {
    const int64_t j = KerasColumn(d, r);
    const float* row = dw + r * K;
    for (int64_t k = 0; k < d.U; ++k) drecurrent[k * G + j] = row[k];
    for (int64_t n = 0; n < d.N; ++n) dkernel[n * G + j] = row[d.U + n];
    dbias[j] = row[K - 1];
  }
}

// ---- GRU: G = 3 rows [z, r, hr] per unit read [h; x_t; 1] (hr's x columns
// are zero), X = 1 row reads [x_t; 1]; Keras's (d, 3u), (u, 3u), (2, 3u) ----

// w (3U, K) and wx (U, Kx). z's and r's biases are Keras's two summed.
inline void PackGru(const Dims& d, const float* kernel, const float* recurrent, const float* bias, float* w,
                    float* wx) {
  const int64_t K = d.K(), Kx = d.Kx(), U = d.U, C = 3 * U;
  for (int64_t r = 0; r < C; ++r) {
    const int64_t j = KerasColumn(d, r);
    const bool candidate = j >= 2 * U;
    float* row = w + r * K;
    for (int64_t k = 0; k < U; ++k) row[k] = recurrent[k * C + j];
    for (int64_t n = 0; n < d.N; ++n) row[U + n] = candidate ? 0.f : kernel[n * C + j];
    row[K - 1] = candidate ? bias[C + j] : bias[j] + bias[C + j];
  }
  for (int64_t r = 0; r < U; ++r) {  // block p's rows are units [p*up, (p+1)*up): r is the unit
    const int64_t j = 2 * U + r;
    float* row = wx + r * Kx;
    for (int64_t n = 0; n < d.N; ++n) row[n] = kernel[n * C + j];
    row[d.N] = bias[j];
  }
}

// dw (3U, K) and dwx (U, Kx) back to Keras's (N, 3U), (U, 3U), (2, 3U).
inline void UnpackGru(const Dims& d, const float* dw, const float* dwx, float* dkernel, float* drecurrent,
                      float* dbias) {
  const int64_t K = d.K(), Kx = d.Kx(), U = d.U, C = 3 * U;
  for (int64_t r = 0; r < C; ++r) {
    const int64_t j = KerasColumn(d, r);
    const float* row = dw + r * K;
    for (int64_t k = 0; k < U; ++k) drecurrent[k * C + j] = row[k];
    if (j < 2 * U) {
      for (int64_t n = 0; n < d.N; ++n) dkernel[n * C + j] = row[U + n];
      dbias[j] = row[K - 1];
    }
    dbias[C + j] = row[K - 1];
  }
  for (int64_t r = 0; r < U; ++r) {
    const int64_t j = 2 * U + r;
    const float* row = dwx + r * Kx;
    for (int64_t n = 0; n < d.N; ++n) dkernel[n * C + j] = row[n];
    dbias[j] = row[d.N];
  }
}


// ---- RNN: G = 1 row per unit (the block-major row r is unit r), Keras's (d, u), (u, u), (u) ----

// w (U, K) = [R; W; b]^T.
inline void PackRnn(const Dims& d, const float* kernel, const float* recurrent, const float* bias, float* w) {
  const int64_t K = d.K(), U = d.U;
  for (int64_t r = 0; r < U; ++r) {
    float* row = w + r * K;
    for (int64_t k = 0; k < U; ++k) row[k] = recurrent[k * U + r];
    for (int64_t m = 0; m < d.N; ++m) row[U + m] = kernel[m * U + r];
    row[K - 1] = bias[r];
  }
}

// dw (U, K) back to Keras's (N, U), (U, U), (U).
inline void UnpackRnn(const Dims& d, const float* dw, float* dkernel, float* drecurrent, float* dbias) {
  const int64_t K = d.K(), U = d.U;
  for (int64_t r = 0; r < U; ++r) {
    const float* row = dw + r * K;
    for (int64_t k = 0; k < U; ++k) drecurrent[k * U + r] = row[k];
    for (int64_t m = 0; m < d.N; ++m) dkernel[m * U + r] = row[U + m];
    dbias[r] = row[K - 1];
  }
}

}  // namespace seqrnn

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

seqrnn::Scheduler PoolScheduler(OpKernelContext* ctx) {
  auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
  return [pool](std::function<void()> fn) { pool->Schedule(std::move(fn)); };
}

const float* Data(const Tensor& t) { return t.flat<float>().data(); }
float* Data(Tensor* t) { return t->flat<float>().data(); }

// ---- What the three cells' sequence ops share ----
//
// Each cell is a pair of ops, `Name` and `NameGrad`, of one shape:
//   Name(x (B, T, d), <state>0 (B, u) per state, kernel, recurrent, bias:
//        Keras's layout and gate order, taps (T, states) float64 zeros or
//        empty)
//     -> h_seq (B, T, u) with return_sequences, else (B, 0, u);
//        <state>_last (B, u) per state; blocks; the caches the gradient reads
//   NameGrad(blocks, the caches, dh_seq (B, T, u) or empty when nothing
//            reads the sequence, d<state>_last (B, u) per state)
//     -> dx, d<state>0 per state, dkernel, drecurrent, dbias, and with
//        with_taps dtaps (T, states): per step the squared norms of the total
//        dL/d<state>_t (see above), else empty. Without weight_grad the
//        weights' gradients are zeros.
// A cell states the differences (Spec); SeqForwardOp and SeqGradOp check
// the inputs and make the outputs they share; the cell's ops keep its maths.
struct Spec {
  const char* name;
  std::vector<std::string> states;  // "h", then the LSTM's "c"
  std::vector<std::string> caches;  // the forward's outputs the gradient reads; w first
  int64_t G, X;                     // seqrnn::Dims's rows per unit
  int64_t gates;                    // Keras's kernel is (d, gates * u)
  int bias_rows;                    // Keras's bias: (gates * u), or the GRU's (2, gates * u)

  int S() const { return static_cast<int>(states.size()); }
  int C() const { return static_cast<int>(caches.size()); }
  int Cache(const std::string& name) const {
    return static_cast<int>(std::find(caches.begin(), caches.end(), name) - caches.begin());
  }
  std::string Cols() const { return gates == 1 ? "units" : std::to_string(gates) + " * units"; }
  std::string BiasShape() const { return bias_rows == 2 ? "(2, " + Cols() + ")" : "(" + Cols() + ")"; }
};

const Spec kLstm{"SeqvgLstmSeq", {"h", "c"}, {"w", "s", "c", "act"}, 4, 0, 4, 1};
const Spec kGru{"SeqvgGruSeq", {"h"}, {"w", "wx", "s", "act"}, 3, 1, 3, 2};
const Spec kRnn{"SeqvgRnnSeq", {"h"}, {"w", "s"}, 1, 0, 1, 1};

// Registers a cell's pair of ops.
bool Register(const Spec& c) {
  using tensorflow::register_op::OpDefBuilderWrapper;
  const int S = c.S(), C = c.C(), bias_rank = c.bias_rows == 2 ? 2 : 1;
  OpDefBuilderWrapper fwd(c.name);
  fwd.Input("x: float");
  for (const auto& s : c.states) fwd.Input(s + "0: float");
  fwd.Input("kernel: float").Input("recurrent: float").Input("bias: float").Input("taps: double");
  fwd.Attr("return_sequences: bool = false").Attr("max_threads: int = 0").Attr("weight_grad: bool = true");
  fwd.Output("h_seq: float");
  for (const auto& s : c.states) fwd.Output(s + "_last: float");
  fwd.Output("blocks: int32");
  for (const auto& k : c.caches) fwd.Output(k + ": float");
  fwd.SetShapeFn([S, C](InferenceContext* ctx) {
    ShapeHandle x, h0;
    bool seq;
    TF_RETURN_IF_ERROR(ctx->GetAttr("return_sequences", &seq));
    TF_RETURN_IF_ERROR(ctx->WithRank(ctx->input(0), 3, &x));
    TF_RETURN_IF_ERROR(ctx->WithRank(ctx->input(1), 2, &h0));
    DimensionHandle b = ctx->Dim(x, 0), t = ctx->Dim(x, 1), u = ctx->Dim(h0, 1);
    ctx->set_output(0, ctx->MakeShape({b, seq ? t : ctx->MakeDim(0), u}));
    for (int k = 1; k <= S; ++k) ctx->set_output(k, h0);
    ctx->set_output(S + 1, ctx->Scalar());
    for (int k = 0; k < C; ++k) ctx->set_output(S + 2 + k, ctx->UnknownShape());
    return absl::OkStatus();
  });
  fwd();
  const std::string grad_name = std::string(c.name) + "Grad";
  OpDefBuilderWrapper grad(grad_name.c_str());
  grad.Input("blocks: int32");
  for (const auto& k : c.caches) grad.Input(k + ": float");
  grad.Input("dh_seq: float");
  for (const auto& s : c.states) grad.Input("d" + s + "_last: float");
  grad.Attr("weight_grad: bool = true").Attr("with_taps: bool = false");
  grad.Output("dx: float");
  for (const auto& s : c.states) grad.Output("d" + s + "0: float");
  grad.Output("dkernel: float").Output("drecurrent: float").Output("dbias: float").Output("dtaps: double");
  grad.SetShapeFn([S, C, bias_rank](InferenceContext* ctx) {
    ShapeHandle h;
    TF_RETURN_IF_ERROR(ctx->WithRank(ctx->input(C + 2), 2, &h));
    ctx->set_output(0, ctx->UnknownShapeOfRank(3));
    for (int k = 1; k <= S; ++k) ctx->set_output(k, h);
    ctx->set_output(S + 1, ctx->UnknownShapeOfRank(2));
    ctx->set_output(S + 2, ctx->UnknownShapeOfRank(2));
    ctx->set_output(S + 3, ctx->UnknownShapeOfRank(bias_rank));
    ctx->set_output(S + 4, ctx->UnknownShape());
    return absl::OkStatus();
  });
  grad();
  return true;
}

[[maybe_unused]] const bool kRegistered = Register(kLstm) && Register(kGru) && Register(kRnn);

// The probe's squared norms: (T, S) from the blocks' sums, or empty.
struct Taps {
  bool on;
  std::vector<double> blocks;
  Taps(bool with_taps, const seqrnn::Dims& d, int64_t S) : on(with_taps), blocks(with_taps ? d.T * d.V * S : 0) {}
  double* data() { return on ? blocks.data() : nullptr; }
};

// What a cell's forward maths reads and writes.
struct ForwardIO {
  seqrnn::Dims d;
  const float *x, *kernel, *recurrent, *bias;
  std::vector<const float*> init;  // per state, (B, u)
  float* h_seq;                    // null without return_sequences
  std::vector<float*> last;        // per state, (B, u)
  std::vector<Tensor*> caches;     // as Spec::caches
};

// A forward sequence op: checks the inputs, makes the outputs (the caches
// with the cell's shapes) and leaves the maths to Run.
class SeqForwardOp : public OpKernel {
 public:
  SeqForwardOp(OpKernelConstruction* ctx, const Spec& spec) : OpKernel(ctx), spec_(spec) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("return_sequences", &seq_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("max_threads", &max_threads_));
  }

  void Compute(OpKernelContext* ctx) final {
    const int S = spec_.S();
    const int64_t g = spec_.gates;
    const Tensor& x = ctx->input(0);
    const Tensor &kernel = ctx->input(S + 1), &recurrent = ctx->input(S + 2), &bias = ctx->input(S + 3);
    const Tensor& taps = ctx->input(S + 4);
    OP_REQUIRES(ctx, x.dims() == 3, absl::InvalidArgumentError("x must be (batch, T, features)"));
    const int64_t B = x.dim_size(0), T = x.dim_size(1), N = x.dim_size(2);
    OP_REQUIRES(ctx, recurrent.dims() == 2 && recurrent.dim_size(1) == g * recurrent.dim_size(0),
                absl::InvalidArgumentError("recurrent must be (units, " + spec_.Cols() + ")"));
    const int64_t U = recurrent.dim_size(0);
    const bool bias_ok = spec_.bias_rows == 2
                             ? bias.dims() == 2 && bias.dim_size(0) == 2 && bias.dim_size(1) == g * U
                             : bias.dims() == 1 && bias.dim_size(0) == g * U;
    OP_REQUIRES(ctx, kernel.dims() == 2 && kernel.dim_size(0) == N && kernel.dim_size(1) == g * U && bias_ok,
                absl::InvalidArgumentError("kernel must be (features, " + spec_.Cols() + "), bias " +
                                           spec_.BiasShape()));
    std::string names;
    bool states_ok = true;
    for (int k = 0; k < S; ++k) {
      const Tensor& s0 = ctx->input(1 + k);
      states_ok = states_ok && s0.dims() == 2 && s0.dim_size(0) == B && s0.dim_size(1) == U;
      names += (k > 0 ? " and " : "") + spec_.states[k] + "0";
    }
    OP_REQUIRES(ctx, states_ok, absl::InvalidArgumentError(names + " must be (batch, units)"));
    OP_REQUIRES(ctx, taps.NumElements() == 0 || taps.NumElements() == S * T,
                absl::InvalidArgumentError("taps must be empty or (T, " + std::to_string(S) + ")"));
    const int64_t V = seqrnn::Blocks(U);
    ForwardIO io{{T, B, N, U, V, Threads(ctx, V, max_threads_), spec_.G, spec_.X},
                 Data(x), Data(kernel), Data(recurrent), Data(bias), {}, nullptr, {}, {}};
    Tensor *h_seq, *blocks;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({B, seq_ ? T : 0, U}), &h_seq));
    if (seq_) io.h_seq = Data(h_seq);
    for (int k = 0; k < S; ++k) {
      Tensor* last;
      OP_REQUIRES_OK(ctx, ctx->allocate_output(1 + k, TensorShape({B, U}), &last));
      io.init.push_back(Data(ctx->input(1 + k)));
      io.last.push_back(Data(last));
    }
    OP_REQUIRES_OK(ctx, ctx->allocate_output(S + 1, TensorShape({}), &blocks));
    blocks->scalar<int32_t>()() = static_cast<int32_t>(V);
    const std::vector<TensorShape> shapes = CacheShapes(io.d);
    for (int k = 0; k < spec_.C(); ++k) {
      Tensor* cache;
      OP_REQUIRES_OK(ctx, ctx->allocate_output(S + 2 + k, shapes[k], &cache));
      io.caches.push_back(cache);
    }
    Run(ctx, io);
  }

 protected:
  // Shapes of the caches, in Spec::caches's order.
  virtual std::vector<TensorShape> CacheShapes(const seqrnn::Dims& d) const = 0;
  // The cell's forward maths: fills io.caches, io.last and io.h_seq.
  virtual void Run(OpKernelContext* ctx, const ForwardIO& io) = 0;

 private:
  const Spec& spec_;
  bool seq_;
  int max_threads_;
};

// What a cell's backward maths reads and writes.
struct GradIO {
  seqrnn::Dims d;
  std::vector<const float*> caches;  // as Spec::caches
  const float* dh_seq;               // null when nothing reads the sequence
  std::vector<const float*> dlast;   // per state, (B, u)
  float* dx;
  std::vector<float*> d0;            // per state, (B, u)
  double* taps;                      // (T, V, states) or null
  float *dw, *dwx;                   // the packed weights' gradients, or null without weight_grad
};

// A gradient op: checks the forward op's caches and the incoming
// gradients, makes the outputs, runs the cell's Run and unpacks its weight
// gradient (Unpack) or zeros it.
class SeqGradOp : public OpKernel {
 public:
  SeqGradOp(OpKernelConstruction* ctx, const Spec& spec) : OpKernel(ctx), spec_(spec) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("weight_grad", &weight_grad_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("with_taps", &with_taps_));
  }

  void Compute(OpKernelContext* ctx) final {
    const int S = spec_.S(), C = spec_.C();
    const Tensor &blocks = ctx->input(0), &w = ctx->input(1), &s = ctx->input(1 + spec_.Cache("s"));
    const Tensor& dh_seq = ctx->input(C + 1);
    bool ranks = s.dims() == 3 && w.dims() == 2;
    for (int k = 0; k < S; ++k) ranks = ranks && ctx->input(C + 2 + k).dims() == 2;
    OP_REQUIRES(ctx, ranks, absl::InvalidArgumentError("the forward op's caches and (batch, units) gradients"));
    const int64_t T = s.dim_size(0) - 1, K = s.dim_size(1), B = s.dim_size(2), U = w.dim_size(0) / spec_.G;
    const int64_t V = blocks.scalar<int32_t>()();
    OP_REQUIRES(ctx, V >= 1 && U >= 1 && U % V == 0 && K > U, absl::InvalidArgumentError("blocks must divide units"));
    GradIO io{{T, B, K - U - 1, U, V, Threads(ctx, V, 0), spec_.G, spec_.X}, {}, nullptr, {}, nullptr, {},
              nullptr, nullptr, nullptr};
    const seqrnn::Dims& d = io.d;
    bool fits = w.dim_size(0) == spec_.G * U && w.dim_size(1) == K &&
                (dh_seq.NumElements() == 0 || dh_seq.NumElements() == B * T * U) && CachesFit(d, ctx, 1);
    for (int k = 0; k < S; ++k)
      fits = fits && ctx->input(C + 2 + k).dim_size(0) == B && ctx->input(C + 2 + k).dim_size(1) == U;
    OP_REQUIRES(ctx, fits, absl::InvalidArgumentError("inconsistent shapes: not the forward op's outputs"));
    for (int k = 0; k < C; ++k) io.caches.push_back(Data(ctx->input(1 + k)));
    if (dh_seq.NumElements() != 0) io.dh_seq = Data(dh_seq);
    for (int k = 0; k < S; ++k) io.dlast.push_back(Data(ctx->input(C + 2 + k)));
    const int64_t g = spec_.gates;
    Tensor *dx, *dkernel, *drecurrent, *dbias, *dtaps;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({B, T, d.N}), &dx));
    io.dx = Data(dx);
    for (int k = 0; k < S; ++k) {
      Tensor* d0;
      OP_REQUIRES_OK(ctx, ctx->allocate_output(1 + k, TensorShape({B, U}), &d0));
      io.d0.push_back(Data(d0));
    }
    OP_REQUIRES_OK(ctx, ctx->allocate_output(S + 1, TensorShape({d.N, g * U}), &dkernel));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(S + 2, TensorShape({U, g * U}), &drecurrent));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(S + 3, spec_.bias_rows == 2 ? TensorShape({2, g * U})
                                                                         : TensorShape({g * U}), &dbias));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(S + 4, with_taps_ ? TensorShape({T, S}) : TensorShape({0}), &dtaps));
    std::vector<float> dw(weight_grad_ ? d.G * U * K : 0), dwx(weight_grad_ ? d.X * U * d.Kx() : 0);
    Taps taps(with_taps_, d, S);
    io.taps = taps.data();
    io.dw = weight_grad_ ? dw.data() : nullptr;
    io.dwx = weight_grad_ && d.X > 0 ? dwx.data() : nullptr;
    Run(ctx, io);
    if (weight_grad_) {
      Unpack(d, io.dw, io.dwx, Data(dkernel), Data(drecurrent), Data(dbias));
    } else {
      dkernel->flat<float>().setZero();
      drecurrent->flat<float>().setZero();
      dbias->flat<float>().setZero();
    }
    if (with_taps_) seqrnn::SumBlocks(d, S, taps.data(), dtaps->flat<double>().data());
  }

 protected:
  // Whether the caches from input `first` on fit d (beyond w and s).
  virtual bool CachesFit(const seqrnn::Dims& d, OpKernelContext* ctx, int first) const = 0;
  // The cell's backward loop (seqrnn::Backward with its step).
  virtual void Run(OpKernelContext* ctx, const GradIO& io) = 0;
  // The packed weight gradient back to Keras's kernel, recurrent and bias.
  virtual void Unpack(const seqrnn::Dims& d, const float* dw, const float* dwx, float* dkernel, float* drecurrent,
                      float* dbias) const = 0;

 private:
  const Spec& spec_;
  bool weight_grad_, with_taps_;
};

}  // namespace

// ---- LSTM: the caches w (4u, K), s (T+1, K, B), c (T+1, u, B), act (T, 5u, B), K = u + d + 1 ----

class SeqvgLstmSeqOp : public SeqForwardOp {
 public:
  explicit SeqvgLstmSeqOp(OpKernelConstruction* ctx) : SeqForwardOp(ctx, kLstm) {}

 protected:
  std::vector<TensorShape> CacheShapes(const seqrnn::Dims& d) const override {
    return {TensorShape({4 * d.U, d.K()}), TensorShape({d.T + 1, d.K(), d.B}), TensorShape({d.T + 1, d.U, d.B}),
            TensorShape({d.T, 5 * d.U, d.B})};
  }

  void Run(OpKernelContext* ctx, const ForwardIO& io) override {
    const seqrnn::Dims& d = io.d;
    const int64_t T = d.T, B = d.B, U = d.U, K = d.K(), up = d.up(), n = up * B;
    float *w = Data(io.caches[0]), *sp = Data(io.caches[1]), *cp = Data(io.caches[2]), *ap = Data(io.caches[3]);
    seqrnn::PackLstm(d, io.kernel, io.recurrent, io.bias, w);
    seqrnn::FillInputs(d, io.x, io.init[0], sp);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t k = 0; k < U; ++k) cp[k * B + b] = io.init[1][b * U + k];
    seqrnn::Forward(d, PoolScheduler(ctx), w, nullptr, sp, [&](int64_t t, int64_t v, const float* zm, const float*) {
      lstmcell::Forward(n, zm, cp + (t * U + v * up) * B, nullptr, ap + (t * 5 * U + v * 5 * up) * B,
                        cp + ((t + 1) * U + v * up) * B, sp + ((t + 1) * K + v * up) * B);
    });
    seqrnn::Outputs(d, sp, io.last[0], io.h_seq);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t k = 0; k < U; ++k) io.last[1][b * U + k] = cp[(T * U + k) * B + b];
  }
};

class SeqvgLstmSeqGradOp : public SeqGradOp {
 public:
  explicit SeqvgLstmSeqGradOp(OpKernelConstruction* ctx) : SeqGradOp(ctx, kLstm) {}

 protected:
  bool CachesFit(const seqrnn::Dims& d, OpKernelContext* ctx, int first) const override {
    return ctx->input(first + 2).NumElements() == (d.T + 1) * d.U * d.B &&
           ctx->input(first + 3).NumElements() == d.T * 5 * d.U * d.B;
  }

  void Run(OpKernelContext* ctx, const GradIO& io) override {
    const seqrnn::Dims& d = io.d;
    const int64_t U = d.U, B = d.B, up = d.up(), n = up * B;
    const float *cp = io.caches[2], *ap = io.caches[3];
    seqrnn::Backward(d, PoolScheduler(ctx), io.caches[0], nullptr, io.caches[1], io.dh_seq, io.dlast[0], io.dlast[1],
                     /*carry_into_h=*/false, io.dw != nullptr, io.taps, 2,
                     [&](int64_t t, int64_t v, float* dh, float* dc, float* dz, float*, double* sq) {
                       if (sq != nullptr) sq[0] = CArr(dh, n).cast<double>().square().sum();
                       lstmcell::Backward(n, ap + (t * 5 * U + v * 5 * up) * B, cp + (t * U + v * up) * B, dh, dc,
                                          dz, nullptr, sq != nullptr ? sq + 1 : nullptr);
                     },
                     io.dx, io.d0[0], io.d0[1], io.dw, nullptr);
  }

  void Unpack(const seqrnn::Dims& d, const float* dw, const float*, float* dkernel, float* drecurrent,
              float* dbias) const override {
    seqrnn::UnpackLstm(d, dw, dkernel, drecurrent, dbias);
  }
};

REGISTER_KERNEL_BUILDER(Name("SeqvgLstmSeq").Device(tensorflow::DEVICE_CPU), SeqvgLstmSeqOp);
REGISTER_KERNEL_BUILDER(Name("SeqvgLstmSeqGrad").Device(tensorflow::DEVICE_CPU), SeqvgLstmSeqGradOp);

// ---- GRU (Keras's reset_after=True, gate order [z, r, h]; bias (2, 3u)):
// the caches w (3u, K), wx (u, d+1), s (T+1, K, B), act (T, 4u, B) ----

class SeqvgGruSeqOp : public SeqForwardOp {
 public:
  explicit SeqvgGruSeqOp(OpKernelConstruction* ctx) : SeqForwardOp(ctx, kGru) {}

 protected:
  std::vector<TensorShape> CacheShapes(const seqrnn::Dims& d) const override {
    return {TensorShape({3 * d.U, d.K()}), TensorShape({d.U, d.Kx()}), TensorShape({d.T + 1, d.K(), d.B}),
            TensorShape({d.T, 4 * d.U, d.B})};
  }

  void Run(OpKernelContext* ctx, const ForwardIO& io) override {
    const seqrnn::Dims& d = io.d;
    const int64_t U = d.U, B = d.B, K = d.K(), up = d.up(), n = up * B;
    float *w = Data(io.caches[0]), *wx = Data(io.caches[1]), *sp = Data(io.caches[2]), *ap = Data(io.caches[3]);
    seqrnn::PackGru(d, io.kernel, io.recurrent, io.bias, w, wx);
    seqrnn::FillInputs(d, io.x, io.init[0], sp);
    seqrnn::Forward(d, PoolScheduler(ctx), w, wx, sp, [&](int64_t t, int64_t v, const float* zm, const float* zx) {
      grucell::Forward(n, zm, zx, sp + (t * K + v * up) * B, ap + (t * 4 * U + v * 4 * up) * B,
                       sp + ((t + 1) * K + v * up) * B);
    });
    seqrnn::Outputs(d, sp, io.last[0], io.h_seq);
  }
};

class SeqvgGruSeqGradOp : public SeqGradOp {
 public:
  explicit SeqvgGruSeqGradOp(OpKernelConstruction* ctx) : SeqGradOp(ctx, kGru) {}

 protected:
  bool CachesFit(const seqrnn::Dims& d, OpKernelContext* ctx, int first) const override {
    const Tensor& wx = ctx->input(first + 1);
    return wx.dims() == 2 && wx.dim_size(0) == d.U && wx.dim_size(1) == d.Kx() &&
           ctx->input(first + 3).NumElements() == d.T * 4 * d.U * d.B;
  }

  void Run(OpKernelContext* ctx, const GradIO& io) override {
    const seqrnn::Dims& d = io.d;
    const int64_t U = d.U, B = d.B, K = d.K(), up = d.up(), n = up * B;
    const float *sp = io.caches[2], *ap = io.caches[3];
    seqrnn::Backward(d, PoolScheduler(ctx), io.caches[0], io.caches[1], sp, io.dh_seq, io.dlast[0], nullptr,
                     /*carry_into_h=*/true, io.dw != nullptr, io.taps, 1,
                     [&](int64_t t, int64_t v, float* dh, float* carry, float* dz, float* dzx, double* sq) {
                       if (sq != nullptr) sq[0] = CArr(dh, n).cast<double>().square().sum();
                       grucell::Backward(n, ap + (t * 4 * U + v * 4 * up) * B, sp + (t * K + v * up) * B, dh, carry,
                                         dz, dzx);
                     },
                     io.dx, io.d0[0], nullptr, io.dw, io.dwx);
  }

  void Unpack(const seqrnn::Dims& d, const float* dw, const float* dwx, float* dkernel, float* drecurrent,
              float* dbias) const override {
    seqrnn::UnpackGru(d, dw, dwx, dkernel, drecurrent, dbias);
  }
};

REGISTER_KERNEL_BUILDER(Name("SeqvgGruSeq").Device(tensorflow::DEVICE_CPU), SeqvgGruSeqOp);
REGISTER_KERNEL_BUILDER(Name("SeqvgGruSeqGrad").Device(tensorflow::DEVICE_CPU), SeqvgGruSeqGradOp);

// ---- The vanilla RNN: Keras's SimpleRNN with tanh, h_t = tanh(x_t W + h_{t-1} R + b) ----
//
// Only the gradient probe (seqvg/probe.py) runs it: a vanilla layer trains
// on Keras's loop. The backward needs only h_t (tanh' = 1 - h_t^2), which s
// holds, so the caches are w (u, K) and s (T+1, K, B).

class SeqvgRnnSeqOp : public SeqForwardOp {
 public:
  explicit SeqvgRnnSeqOp(OpKernelConstruction* ctx) : SeqForwardOp(ctx, kRnn) {}

 protected:
  std::vector<TensorShape> CacheShapes(const seqrnn::Dims& d) const override {
    return {TensorShape({d.U, d.K()}), TensorShape({d.T + 1, d.K(), d.B})};
  }

  void Run(OpKernelContext* ctx, const ForwardIO& io) override {
    const seqrnn::Dims& d = io.d;
    const int64_t B = d.B, K = d.K(), up = d.up(), n = up * B;
    float *w = Data(io.caches[0]), *sp = Data(io.caches[1]);
    seqrnn::PackRnn(d, io.kernel, io.recurrent, io.bias, w);
    seqrnn::FillInputs(d, io.x, io.init[0], sp);
    seqrnn::Forward(d, PoolScheduler(ctx), w, nullptr, sp, [&](int64_t t, int64_t v, const float* zm, const float*) {
      Arr(sp + ((t + 1) * K + v * up) * B, n) = CArr(zm, n).tanh();
    });
    seqrnn::Outputs(d, sp, io.last[0], io.h_seq);
  }
};

class SeqvgRnnSeqGradOp : public SeqGradOp {
 public:
  explicit SeqvgRnnSeqGradOp(OpKernelConstruction* ctx) : SeqGradOp(ctx, kRnn) {}

 protected:
  bool CachesFit(const seqrnn::Dims&, OpKernelContext*, int) const override { return true; }

  void Run(OpKernelContext* ctx, const GradIO& io) override {
    const seqrnn::Dims& d = io.d;
    const int64_t B = d.B, K = d.K(), up = d.up(), n = up * B;
    const float* sp = io.caches[1];
    seqrnn::Backward(d, PoolScheduler(ctx), io.caches[0], nullptr, sp, io.dh_seq, io.dlast[0], nullptr,
                     /*carry_into_h=*/false, io.dw != nullptr, io.taps, 1,
                     [&](int64_t t, int64_t v, float* dh, float*, float* dz, float*, double* sq) {
                       if (sq != nullptr) sq[0] = CArr(dh, n).cast<double>().square().sum();
                       CArr h(sp + ((t + 1) * K + v * up) * B, n);
                       Arr(dz, n) = CArr(dh, n) * (1.f - h * h);
                     },
                     io.dx, io.d0[0], nullptr, io.dw, nullptr);
  }

  void Unpack(const seqrnn::Dims& d, const float* dw, const float*, float* dkernel, float* drecurrent,
              float* dbias) const override {
    seqrnn::UnpackRnn(d, dw, dkernel, drecurrent, dbias);
  }
};

REGISTER_KERNEL_BUILDER(Name("SeqvgRnnSeq").Device(tensorflow::DEVICE_CPU), SeqvgRnnSeqOp);
REGISTER_KERNEL_BUILDER(Name("SeqvgRnnSeqGrad").Device(tensorflow::DEVICE_CPU), SeqvgRnnSeqGradOp);

// ---- The step Jacobian's spectral norm per row (seqvg/stepstats.py) ----
//
// sigma_max(J) of one step of a cell the sequence ops run (the same maths,
// tanh and sigmoid), linearised in its whole state, one J per row (a sample
// at a Jacobian point), by `dim` Lanczos steps on J^T J from the row of v0:
// the top eigenvalue of each row's (dim x dim) tridiagonal matrix, the
// recurrence of stepstats.lanczos_tridiagonal, whose TensorFlow ops this
// replaces for these cells (there, ~80 small ops per Lanczos step cost three
// times its two matmuls). J v and J^T u are one GEMM each with Keras's
// recurrent matrix R (u, G u) and elementwise factors, the activations'
// derivatives at the point (stepstats.step_coefficients, in the same order):
//   rnn  [d]:                 J v = d (v R),  J^T w = (d w) R^T
//   gru  [cz, z, cr, ch]:     J v = cz E_z + z v + cr E_r + ch E_h, E = v R
//                             J^T w = [w cz, w cr, w ch] R^T + w z
//   lstm [f, af, ai, ag, ao, bc], state [h; c]:
//                             e = f v_c + ai E_i + af E_f + ag E_g, E = v_h R
//                             J v = [ao E_o + bc e; e]
//                             k = w_c + bc w_h,  J^T w = [[k ai, k af, k ag, w_h ao] R^T; k f]
// Rows are cut into blocks of kRows fixed by the row count and handed to the
// threads as they come free: a row's numbers do not depend on the threads.
// 80 rows: a probe's 5 x 64 in four blocks, even on 2 or 4 threads.
//
// The products with R and R^T are most of the work (24 per block at a
// probe's dim 12). Where AVX-512 is, R and R^T are packed once per call into
// column panels that every block and thread reads, and a register-tiled
// kernel (Product) computes each output as one FMA chain over k in order from
// zero: the same operations, in the same order, as Eigen's AVX-512 GEMM
// kernel where the depth fits one of its k-panels (as at a probe's sizes),
// so the same bits (a probe's sigmas at 128 units compared with Eigen's),
// without Eigen repacking R and the vectors for each of the 24 products:
// ~170 GFLOP/s on one core at 128 units in a micro-benchmark where Eigen's
// ran at 80-150.
namespace stepjac {

using Mat = seqrnn::Mat;
using CMMap = seqrnn::CMMap;
using RArr = Eigen::Array<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
constexpr int64_t kRows = 80;

enum Kind { kRnn = 0, kGru = 1, kLstm = 2 };

#if defined(__AVX512F__)
#define SEQVG_STEPJAC_KERNEL 1
// A (k, n) matrix in panels of kWidth columns (the last one zero-padded):
// panel p holds B(kk, p kWidth + j) at data[(p k + kk) kWidth + j].
constexpr int kVecs = 4, kWidth = 16 * kVecs, kTileRows = 6;
struct Packed {
  int64_t k = 0, n = 0;
  std::vector<float, Eigen::aligned_allocator<float>> data;
};

// B(kk, j) = b[kk * step_k + j * step_n].
inline void Pack(const float* b, int64_t step_k, int64_t step_n, int64_t k, int64_t n, Packed& out) {
  out.k = k;
  out.n = n;
  out.data.assign(((n + kWidth - 1) / kWidth) * kWidth * k, 0.f);
  for (int64_t p = 0; p * kWidth < n; ++p) {
    float* panel = out.data.data() + p * k * kWidth;
    const int64_t w = std::min<int64_t>(kWidth, n - p * kWidth);
    for (int64_t kk = 0; kk < k; ++kk)
      for (int64_t j = 0; j < w; ++j) panel[kk * kWidth + j] = b[kk * step_k + (p * kWidth + j) * step_n];
  }
}

// Rows [0, MR) of C (ldc) at one panel's columns = the rows of A (lda)
// times the panel: per output one FMA chain over k in order, from zero
// (Eigen's AVX-512 kernel's). mask[v]: the columns of vector v that exist.
// Not inlined: on its own the loop keeps its row addresses in registers (two
// bases, lda and 2 lda as indices); inlined into its callers, GCC 12 spilled
// them to the stack and to mask registers inside the loop.
template <int MR>
__attribute__((noinline)) void Tile(const float* a, int64_t lda, const float* panel, int64_t k, float* c,
                                    int64_t ldc, const __mmask16* mask) {
  static_assert(MR == 1 || MR == 6, "rows of three and three, or one");
  __m512 acc[MR][kVecs];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < kVecs; ++v) acc[i][v] = _mm512_setzero_ps();
  const float* a0 = a;
  const float* a3 = a + 3 * lda;
  const int64_t l1 = lda, l2 = 2 * lda;
  for (int64_t kk = 0; kk < k; ++kk, ++a0, ++a3) {
    __m512 b[kVecs];
    for (int v = 0; v < kVecs; ++v) b[v] = _mm512_load_ps(panel + kk * kWidth + 16 * v);
    for (int i = 0; i < MR; ++i) {
      const float* base = i < 3 ? a0 : a3;
      const int64_t off = i % 3 == 0 ? 0 : i % 3 == 1 ? l1 : l2;
      const __m512 ai = _mm512_set1_ps(base[off]);
      for (int v = 0; v < kVecs; ++v) acc[i][v] = _mm512_fmadd_ps(ai, b[v], acc[i][v]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < kVecs; ++v)
      if (mask[v] != 0) _mm512_mask_storeu_ps(c + i * ldc + 16 * v, mask[v], acc[i][v]);
}

// C (m, B.n; ldc) = A (m, B.k; lda) @ B, panel by panel (a panel of R stays
// in cache across all m rows).
inline void Product(const float* a, int64_t lda, int64_t m, const Packed& b, float* c, int64_t ldc) {
  const int64_t full = m / kTileRows * kTileRows;
  for (int64_t p = 0; p * kWidth < b.n; ++p) {
    const float* panel = b.data.data() + p * b.k * kWidth;
    __mmask16 mask[kVecs];
    for (int v = 0; v < kVecs; ++v) {
      const int64_t cols = std::clamp<int64_t>(b.n - p * kWidth - 16 * v, 0, 16);
      mask[v] = static_cast<__mmask16>((1u << cols) - 1u);
    }
    float* cp = c + p * kWidth;
    for (int64_t i = 0; i < full; i += kTileRows) Tile<kTileRows>(a + i * lda, lda, panel, b.k, cp + i * ldc, ldc, mask);
    for (int64_t i = full; i < m; ++i) Tile<1>(a + i * lda, lda, panel, b.k, cp + i * ldc, ldc, mask);
  }
}
#endif

struct Cell {
  Kind kind;
  int64_t u, d;
  const float *x, *s, *bias;  // x (rows, d), s (rows, n), bias (G u) or the GRU's (2, G u)
  CMMap kernel, r;            // (d, G u), (u, G u)
#ifdef SEQVG_STEPJAC_KERNEL
  const Packed *rp, *rtp;     // R and R^T, packed
#endif
  int64_t G() const { return kind == kRnn ? 1 : kind == kGru ? 3 : 4; }
  int64_t n() const { return kind == kLstm ? 2 * u : u; }
};

inline RArr Sigmoid(const RArr& a) { return a.logistic(); }

// The factors of rows [r0, r0 + m), each (m, u): the step's forward maths
// at (x, s) as the sequence ops compute it, then the derivatives.
inline std::vector<RArr> Coefficients(const Cell& c, int64_t r0, int64_t m) {
  const int64_t u = c.u, gu = c.G() * u, n = c.n();
  const CMMap s(c.s + r0 * n, m, n);
  Mat zx = CMMap(c.x + r0 * c.d, m, c.d) * c.kernel;
#ifdef SEQVG_STEPJAC_KERNEL
  Mat zh(m, gu);
  Product(c.s + r0 * n, n, m, *c.rp, zh.data(), gu);
#else
  Mat zh = s.leftCols(u) * c.r;
#endif
  const Eigen::Map<const Eigen::RowVectorXf> b(c.bias, gu);
  if (c.kind == kRnn) {
    RArr h = ((zx + zh).rowwise() + b).array().tanh();
    return {1.f - h * h};
  }
  if (c.kind == kLstm) {
    const RArr z = (zx + zh).rowwise() + b;
    const RArr i = Sigmoid(z.leftCols(u)), f = Sigmoid(z.middleCols(u, u)), o = Sigmoid(z.rightCols(u));
    const RArr g = z.middleCols(2 * u, u).tanh();
    const RArr cp = s.rightCols(u).array();
    const RArr tc = (f * cp + i * g).tanh();
    return {f, cp * f * (1.f - f), g * i * (1.f - i), i * (1.f - g * g), tc * o * (1.f - o), o * (1.f - tc * tc)};
  }
  // Keras's GRU, reset_after=True: the recurrent bias inside r's product.
  const Eigen::Map<const Eigen::RowVectorXf> b_in(c.bias + gu, gu);
  const RArr xp = zx.rowwise() + b, inner = zh.rowwise() + b_in;
  const RArr z = Sigmoid(xp.leftCols(u) + inner.leftCols(u)), r = Sigmoid(xp.middleCols(u, u) + inner.middleCols(u, u));
  const RArr hh = (xp.rightCols(u) + r * inner.rightCols(u)).tanh();
  const RArr keep = (1.f - z) * (1.f - hh * hh);
  return {z * (1.f - z) * (s.leftCols(u).array() - hh), z, keep * r * (1.f - r) * inner.rightCols(u), keep * r};
}

inline void Jvp(const Cell& c, const std::vector<RArr>& k, const Mat& v, Mat& e, Mat& out) {
  const int64_t u = c.u;
#ifdef SEQVG_STEPJAC_KERNEL
  Product(v.data(), v.cols(), v.rows(), *c.rp, e.data(), e.cols());  // v R, or v_h R for the LSTM
#else
  if (c.kind == kLstm) e.noalias() = v.leftCols(u) * c.r; else e.noalias() = v * c.r;
#endif
  if (c.kind == kRnn) {
    out.array() = k[0] * e.array();
  } else if (c.kind == kGru) {
    out.array() = k[0] * e.leftCols(u).array() + k[1] * v.array() + k[2] * e.middleCols(u, u).array() +
                  k[3] * e.rightCols(u).array();
  } else {
    out.rightCols(u).array() = k[0] * v.rightCols(u).array() + k[2] * e.leftCols(u).array() +
                               k[1] * e.middleCols(u, u).array() + k[3] * e.middleCols(2 * u, u).array();
    out.leftCols(u).array() = k[4] * e.rightCols(u).array() + k[5] * out.rightCols(u).array();
  }
}

inline void Vjp(const Cell& c, const std::vector<RArr>& k, const Mat& w, Mat& d, Mat& out) {
  const int64_t u = c.u;
  if (c.kind == kRnn) {
    d.array() = k[0] * w.array();
  } else if (c.kind == kGru) {
    d.leftCols(u).array() = w.array() * k[0];
    d.middleCols(u, u).array() = w.array() * k[2];
    d.rightCols(u).array() = w.array() * k[3];
  } else {
    const RArr carry = w.rightCols(u).array() + k[5] * w.leftCols(u).array();
    d.leftCols(u).array() = carry * k[2];
    d.middleCols(u, u).array() = carry * k[1];
    d.middleCols(2 * u, u).array() = carry * k[3];
    d.rightCols(u).array() = w.leftCols(u).array() * k[4];
    out.rightCols(u).array() = carry * k[0];
  }
#ifdef SEQVG_STEPJAC_KERNEL
  Product(d.data(), d.cols(), d.rows(), *c.rtp, out.data(), out.cols());  // [:, :u] for the LSTM: R^T has u columns
#else
  if (c.kind == kLstm) out.leftCols(u).noalias() = d * c.r.transpose(); else out.noalias() = d * c.r.transpose();
#endif
  if (c.kind == kGru) out.array() += w.array() * k[1];
}

// The largest eigenvalue of the symmetric tridiagonal matrix with diagonal
// a and off-diagonal b (m rows), or NaN where the iteration does not settle.
// Newton's iteration on the characteristic polynomial from above the
// spectrum (Gershgorin's bound) descends monotonically onto its largest root
// (all its roots are real); each step reads the pivots d_k of T - x I, all
// negative above the spectrum, and their derivatives: det'/det = sum d_k'/d_k.
// It stops where a step no longer descends or a pivot is no longer negative
// (x at the eigenvalue to rounding). Eigen's QR, all m eigenvalues, cost
// more than the Lanczos products of a 12 x 12 matrix.
inline double TopEigenvalue(const double* a, const double* b, int64_t m) {
  double x = -std::numeric_limits<double>::infinity();
  for (int64_t k = 0; k < m; ++k)
    x = std::max(x, a[k] + (k > 0 ? std::abs(b[k - 1]) : 0.0) + (k + 1 < m ? std::abs(b[k]) : 0.0));
  for (int it = 0; it < 200 && std::isfinite(x); ++it) {
    double d = 0.0, dd = 0.0, sum = 0.0;
    for (int64_t k = 0; k < m; ++k) {
      if (k == 0 || b[k - 1] == 0.0) {
        d = a[k] - x;
        dd = -1.0;
      } else {
        const double q = b[k - 1] * b[k - 1] / d;
        dd = -1.0 + q * dd / d;
        d = a[k] - x - q;
      }
      if (!(d < 0.0)) return x;
      sum += dd / d;
    }
    const double next = x - 1.0 / sum;
    if (!(next < x)) return x;
    x = next;
  }
  return std::numeric_limits<double>::quiet_NaN();
}

// Rows [r0, r0 + m): their sigma_max estimates into sigma.
inline void Block(const Cell& c, int64_t r0, int64_t m, const float* v0, int64_t dim, float* sigma) {
  const int64_t n = c.n(), gu = c.G() * c.u;
  const std::vector<RArr> k = Coefficients(c, r0, m);
  Mat q = CMMap(v0 + r0 * n, m, n), q_prev = Mat::Zero(m, n), w(m, n), jq(m, n), e(m, gu), d(m, gu);
  std::vector<double> beta(m, 0.0);
  Eigen::MatrixXd alphas = Eigen::MatrixXd::Zero(dim, m), betas = Eigen::MatrixXd::Zero(dim, m);
  for (int64_t r = 0; r < m; ++r) {
    const double norm = std::sqrt(q.row(r).cast<double>().squaredNorm());
    if (norm > 0) q.row(r) *= static_cast<float>(1.0 / norm); else q.row(r).setZero();
  }
  for (int64_t j = 0; j < dim; ++j) {
    Jvp(c, k, q, e, jq);
    Vjp(c, k, jq, d, w);
    for (int64_t r = 0; r < m; ++r) {
      // Float32 vectors, as the TF version's; their sums in double.
      const float alpha = static_cast<float>(q.row(r).cast<double>().dot(w.row(r).cast<double>()));
      alphas(j, r) = alpha;
      if (j == dim - 1) continue;
      const double w_norm = std::sqrt(w.row(r).cast<double>().squaredNorm());
      w.row(r) -= alpha * q.row(r) + static_cast<float>(beta[r]) * q_prev.row(r);
      const double norm = std::sqrt(w.row(r).cast<double>().squaredNorm());
      // A residual at rounding level: the Krylov space is invariant and the
      // row's Ritz values exact; its recurrence stops (as the TF version's).
      const bool alive = norm > 1e-4 * w_norm;
      beta[r] = alive ? norm : 0.0;
      betas(j, r) = beta[r];
      q_prev.row(r) = q.row(r);
      if (alive) q.row(r) = w.row(r) * static_cast<float>(1.0 / norm); else q.row(r).setZero();
    }
  }
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver;
  for (int64_t r = 0; r < m; ++r) {
    double top = TopEigenvalue(alphas.col(r).data(), betas.col(r).data(), dim);
    if (std::isnan(top)) {  // not settled: all eigenvalues by QR
      const Eigen::VectorXd diag = alphas.col(r), off = betas.col(r).head(dim - 1);
      solver.computeFromTridiagonal(diag, off, Eigen::EigenvaluesOnly);
      top = solver.eigenvalues().maxCoeff();
    }
    sigma[r0 + r] = static_cast<float>(std::sqrt(std::max(top, 0.0)));
  }
}

}  // namespace stepjac

namespace {

// fn(p, b) for the work items b in [0, items), on up to max_threads threads
// (0: TensorFlow's intra-op threads), p the thread: each takes the next item
// as it comes free. An item is computed by one thread alone, so its numbers
// do not depend on the thread count.
void ForBlocks(OpKernelContext* ctx, int max_threads, int64_t items, const std::function<void(int, int64_t)>& fn) {
  int P = ctx->device()->tensorflow_cpu_worker_threads()->num_threads;
  if (max_threads > 0) P = std::min(P, max_threads);
  P = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(P, items)));
  std::atomic<int64_t> next{0};
  seqrnn::Parallel(P, PoolScheduler(ctx), [&](int p) {
    for (int64_t b = next++; b < items; b = next++) fn(p, b);
  });
}

}  // namespace

// x (rows, d) and s (rows, n) the input and the entering state ([h] or [h;
// c], n = 2u for the LSTM) of each row's step; kernel (d, G u), recurrent
// (u, G u), bias (G u) or the GRU's (2, G u), Keras's; v0 (rows, n) the start
// vectors; at most max_threads threads (0: TensorFlow's intra-op threads).
// Output: sigma (rows,), the square root of the largest eigenvalue of each
// row's Lanczos matrix.
REGISTER_OP("SeqvgStepSigma")
    .Input("x: float")
    .Input("s: float")
    .Input("kernel: float")
    .Input("recurrent: float")
    .Input("bias: float")
    .Input("v0: float")
    .Attr("cell: {'rnn', 'gru', 'lstm'}")
    .Attr("dim: int >= 1")
    .Attr("max_threads: int = 0")
    .Output("sigma: float")
    .SetShapeFn([](InferenceContext* ctx) {
      ShapeHandle v0;
      TF_RETURN_IF_ERROR(ctx->WithRank(ctx->input(5), 2, &v0));
      ctx->set_output(0, ctx->Vector(ctx->Dim(v0, 0)));
      return absl::OkStatus();
    });

class SeqvgStepSigmaOp : public OpKernel {
 public:
  explicit SeqvgStepSigmaOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::string cell;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("cell", &cell));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("dim", &dim_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("max_threads", &max_threads_));
    kind_ = cell == "rnn" ? stepjac::kRnn : cell == "gru" ? stepjac::kGru : stepjac::kLstm;
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor &x = ctx->input(0), &s = ctx->input(1), &kernel = ctx->input(2), &recurrent = ctx->input(3);
    const Tensor &bias = ctx->input(4), &v0 = ctx->input(5);
    const int64_t G = kind_ == stepjac::kRnn ? 1 : kind_ == stepjac::kGru ? 3 : 4;
    OP_REQUIRES(ctx, recurrent.dims() == 2 && recurrent.dim_size(1) == G * recurrent.dim_size(0),
                absl::InvalidArgumentError("recurrent must be (units, G * units) for the cell"));
    const int64_t u = recurrent.dim_size(0), n = kind_ == stepjac::kLstm ? 2 * u : u;
    OP_REQUIRES(ctx, x.dims() == 2 && kernel.dims() == 2 && kernel.dim_size(0) == x.dim_size(1) &&
                         kernel.dim_size(1) == G * u && bias.NumElements() == (kind_ == stepjac::kGru ? 2 : 1) * G * u,
                absl::InvalidArgumentError("x (rows, d), kernel (d, G * units) and the cell's bias"));
    const int64_t rows = x.dim_size(0);
    OP_REQUIRES(ctx, s.dims() == 2 && s.dim_size(0) == rows && s.dim_size(1) == n && v0.shape() == s.shape(),
                absl::InvalidArgumentError("s and v0 must be (rows, state width)"));
    OP_REQUIRES(ctx, dim_ <= n, absl::InvalidArgumentError("dim must be at most the state width"));
    Tensor* sigma;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({rows}), &sigma));
#ifdef SEQVG_STEPJAC_KERNEL
    stepjac::Packed rp, rtp;  // read by every block
    stepjac::Pack(Data(recurrent), G * u, 1, u, G * u, rp);
    stepjac::Pack(Data(recurrent), 1, G * u, G * u, u, rtp);
#endif
    const stepjac::Cell cell{kind_, u, x.dim_size(1), Data(x), Data(s), Data(bias),
                             seqrnn::CMMap(Data(kernel), x.dim_size(1), G * u),
                             seqrnn::CMMap(Data(recurrent), u, G * u)
#ifdef SEQVG_STEPJAC_KERNEL
                             , &rp, &rtp
#endif
    };
    const int64_t blocks = (rows + stepjac::kRows - 1) / stepjac::kRows;
    const float* v0p = Data(v0);
    float* out = Data(sigma);
    ForBlocks(ctx, max_threads_, blocks, [&](int, int64_t b) {
      const int64_t r0 = b * stepjac::kRows;
      stepjac::Block(cell, r0, std::min(stepjac::kRows, rows - r0), v0p, dim_, out);
    });
  }

 private:
  stepjac::Kind kind_;
  int dim_, max_threads_;
};

REGISTER_KERNEL_BUILDER(Name("SeqvgStepSigma").Device(tensorflow::DEVICE_CPU), SeqvgStepSigmaOp);

// ---- The gates' statistics per timestep (seqvg/why.py, gate_stats) ----
//
// Per timestep, over batch x units: the mean and the 10th, 50th and 90th
// percentiles of a gate, read in place from a sequence op's cache (the
// layout of kernels.gate_views): numpy's numbers, bit for bit. The mean is
// numpy's float64 pairwise sum of the float32 values (the same sums in the
// same order) over n; a percentile is np.percentile's linear interpolation
// between the values at sorted positions floor(q (n-1)) and the next,
// rounded as numpy rounds it. Those positions are found without sorting the
// n values (numpy's vectorised sort was most of a probe's statistics): a
// histogram of the values over [min, max], whose bin index is monotone in
// the value, says which bins hold them, and only those bins' values are
// sorted (a crowded bin is split again the same way). Where AVX-512 is,
// most rows skip even that histogram of all n values: a thread's previous
// row of the gate says in which few hundred values each percentile lies
// (Guide below).
namespace gatestats {

// numpy's pairwise_sum (umath loops_utils) of float32 values cast to double.
inline double PairwiseSum(const float* a, int64_t n) {
  if (n < 8) {
    double res = 0.;
    for (int64_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (int k = 0; k < 8; ++k) r[k] = a[k];
    int64_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int k = 0; k < 8; ++k) r[k] += a[i + k];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  int64_t n2 = n / 2;
  n2 -= n2 % 8;
  return PairwiseSum(a, n2) + PairwiseSum(a + n2, n - n2);
}

// numpy's mean(dtype=float64) of float32 values: the reduction adds the
// pairwise sums of its casting buffer's chunks (NPY_BUFSIZE values) in turn.
inline double Mean(const float* a, int64_t n) {
  constexpr int64_t kBuffer = 8192;
  double sum = 0.;
  for (int64_t i = 0; i < n; i += kBuffer) sum += PairwiseSum(a + i, std::min(kBuffer, n - i));
  return sum / static_cast<double>(n);
}

constexpr int kBins = 1024;  // at most; n / 8 for fewer values
constexpr int64_t kSortBelow = 64;

// A float's bits as an integer in the floats' order (negatives reversed),
// so that the scans below are integer minima and maxima, which a compiler
// vectorises (a float minimum it may not reorder).
inline int32_t OrderKey(float x) {
  int32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b ^ ((b >> 31) & 0x7fffffff);
}

inline float FromKey(int32_t k) {
  const int32_t b = k ^ ((k >> 31) & 0x7fffffff);
  float x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}

// The smallest and largest of a[0..n), n >= 1, no NaN.
inline void MinMax(const float* a, int64_t n, float* lo, float* hi) {
  int32_t l = OrderKey(a[0]), h = l;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t k = OrderKey(a[i]);
    l = std::min(l, k);
    h = std::max(h, k);
  }
  *lo = FromKey(l);
  *hi = FromKey(h);
}

// Whether a[0..n) holds a NaN (an exponent of all ones, a mantissa not 0).
inline bool HasNaN(const float* a, int64_t n) {
  int32_t nan = 0;
  for (int64_t i = 0; i < n; ++i) {
    int32_t b;
    std::memcpy(&b, a + i, sizeof b);
    nan |= (b & 0x7fffffff) > 0x7f800000;
  }
  return nan != 0;
}

// A value's bin: x - lo >= 0 and its product with scale > 0 are monotone in
// x, and so is the truncation, so a value in a lower bin is smaller than
// one in a higher.
inline uint16_t BinOf(float x, float lo, float scale, int bins) {
  const int b = static_cast<int>((x - lo) * scale);
  return static_cast<uint16_t>(b < bins ? b : bins - 1);
}

#if !(defined(__AVX512F__) && defined(__AVX512BW__)) && defined(__AVX2__)
// AVX2 has no compress: the lanes of a mask are moved to the front by a
// permutation from a table of all 256 masks of 8 lanes.
struct PackTable {
  alignas(32) int32_t lanes[256][8];
  constexpr PackTable() : lanes() {
    for (int m = 0; m < 256; ++m) {
      int k = 0;
      for (int j = 0; j < 8; ++j)
        if ((m >> j) & 1) lanes[m][k++] = j;
    }
  }
};
inline constexpr PackTable kPackTable{};

// The lanes of x in mask (8 bits) stored from out on, in order; all 8 lanes
// are written (the caller's buffer has room). Returns how many were kept.
inline int LeftPack(float* out, __m256 x, unsigned mask) {
  const __m256i order = _mm256_load_si256(reinterpret_cast<const __m256i*>(kPackTable.lanes[mask]));
  _mm256_storeu_ps(out, _mm256_permutevar8x32_ps(x, order));
  return __builtin_popcount(mask);
}
#endif

// Buffers of Select, one set per level of its recursion, kept by a thread
// from row to row (allocating and zeroing them per row cost a tenth of it).
struct Scratch {
  std::vector<uint16_t> bin, mixed_bin;
  std::vector<float> mixed, sub;
  std::vector<float> inside[3];  // Row's, at level 0: the values in each percentile's range
  template <typename T>
  static T* Sized(std::vector<T>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(n);
    return v.data();
  }
};
constexpr int kDepth = 6;
constexpr int kMaxRanks = 12;

// out[k] = the value at sorted position ranks[k] of a[0..n) (no NaN), for
// m <= kMaxRanks ranks; a is reordered. scratch: kDepth levels.
inline void Select(float* a, int64_t n, const int64_t* ranks, int m, float* out, Scratch* scratch, int depth = 0) {
  float lo, hi;
  MinMax(a, n, &lo, &hi);
  if (lo == hi) {
    for (int k = 0; k < m; ++k) out[k] = lo;
    return;
  }
  const int bins = static_cast<int>(std::min<int64_t>(kBins, std::max<int64_t>(16, n / 8)));
  const float scale = static_cast<float>(bins) / (hi - lo);
  if (n <= kSortBelow || depth >= kDepth || !std::isfinite(scale) || !(scale > 0.f)) {
    std::sort(a, a + n);
    for (int k = 0; k < m; ++k) out[k] = a[ranks[k]];
    return;
  }
  Scratch& own = scratch[depth];
  uint16_t* bin = Scratch::Sized(own.bin, n);
  for (int64_t i = 0; i < n; ++i) bin[i] = BinOf(a[i], lo, scale, bins);
  // Four partial counts: neighbouring values often share a bin, and one
  // count would wait on its own last increment.
  int32_t part[4][kBins];
  for (auto& counts : part) std::fill(counts, counts + bins, 0);
  int64_t i4 = 0;
  for (; i4 + 4 <= n; i4 += 4)
    for (int k = 0; k < 4; ++k) ++part[k][bin[i4 + k]];
  for (; i4 < n; ++i4) ++part[0][bin[i4]];
  int64_t below[kBins + 1];  // values in the bins below each
  below[0] = 0;
  for (int b = 0; b < bins; ++b) below[b + 1] = below[b] + part[0][b] + part[1][b] + part[2][b] + part[3][b];
  // The bin of each rank; the bins wanted, once each.
  int bin_of[kMaxRanks];
  std::vector<int> wanted;
  uint8_t keep[kBins];
  std::fill(keep, keep + bins, uint8_t{0});
  for (int k = 0; k < m; ++k) {
    bin_of[k] = static_cast<int>(std::upper_bound(below, below + bins + 1, ranks[k]) - below) - 1;
    if (!keep[bin_of[k]]) wanted.push_back(bin_of[k]);
    keep[bin_of[k]] = 1;
  }
  // The wanted bins' values, mixed, without a branch per value (which bins a
  // value falls in is as unpredictable as the value), then apart.
  float* mixed = Scratch::Sized(own.mixed, n + 16);
  uint16_t* mixed_bin = Scratch::Sized(own.mixed_bin, n + 16);
  int64_t taken = 0, i = 0;
#if defined(__AVX512F__) && defined(__AVX512BW__)
  // 32 bins a step: compared with the wanted ones, their values compressed
  // into place (16 lanes a half; a store may run 15 past, hence n + 16).
  __m512i wanted_v[kMaxRanks];
  for (size_t w = 0; w < wanted.size(); ++w) wanted_v[w] = _mm512_set1_epi16(static_cast<int16_t>(wanted[w]));
  for (; i + 32 <= n; i += 32) {
    const __m512i b = _mm512_loadu_si512(bin + i);
    __mmask32 hit = 0;
    for (size_t w = 0; w < wanted.size(); ++w) hit |= _mm512_cmpeq_epi16_mask(b, wanted_v[w]);
    if (hit == 0) continue;
    for (int half = 0; half < 2; ++half) {
      const __mmask16 m = static_cast<__mmask16>(hit >> (16 * half));
      _mm512_storeu_ps(mixed + taken, _mm512_maskz_compress_ps(m, _mm512_loadu_ps(a + i + 16 * half)));
      taken += __builtin_popcount(m);
    }
  }
  for (int64_t j = 0; j < taken; ++j) mixed_bin[j] = BinOf(mixed[j], lo, scale, bins);
#elif defined(__AVX2__)
  // 16 bins a step, as above with 8 lanes a half (a store may run 7 past).
  __m256i wanted_v[kMaxRanks];
  for (size_t w = 0; w < wanted.size(); ++w) wanted_v[w] = _mm256_set1_epi16(static_cast<int16_t>(wanted[w]));
  for (; i + 16 <= n; i += 16) {
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bin + i));
    __m256i hit = _mm256_setzero_si256();
    for (size_t w = 0; w < wanted.size(); ++w) hit = _mm256_or_si256(hit, _mm256_cmpeq_epi16(b, wanted_v[w]));
    // One bit per bin: the 16-bit lanes narrowed to bytes, in order.
    const unsigned bits = static_cast<unsigned>(_mm_movemask_epi8(
        _mm_packs_epi16(_mm256_castsi256_si128(hit), _mm256_extracti128_si256(hit, 1))));
    if (bits == 0) continue;
    for (int half = 0; half < 2; ++half)
      taken += LeftPack(mixed + taken, _mm256_loadu_ps(a + i + 8 * half), (bits >> (8 * half)) & 0xffu);
  }
  for (int64_t j = 0; j < taken; ++j) mixed_bin[j] = BinOf(mixed[j], lo, scale, bins);
#endif
  for (; i < n; ++i) {
    mixed[taken] = a[i];
    mixed_bin[taken] = bin[i];
    taken += keep[bin[i]];
  }
  for (int b : wanted) {
    float* sub = Scratch::Sized(own.sub, below[b + 1] - below[b]);
    int64_t size = 0;
    for (int64_t j = 0; j < taken; ++j)
      if (mixed_bin[j] == b) sub[size++] = mixed[j];
    int64_t local[kMaxRanks];
    int which[kMaxRanks], l = 0;
    for (int k = 0; k < m; ++k)
      if (bin_of[k] == b) {
        local[l] = ranks[k] - below[b];
        which[l++] = k;
      }
    float got[kMaxRanks];
    Select(sub, size, local, l, got, scratch, depth + 1);
    for (int j = 0; j < l; ++j) out[which[j]] = got[j];
  }
}

// numpy's lo + (hi - lo) * frac for float32 lo, hi and a float64 frac: the
// difference in float32, the rest in float64 (the volatile keeps a compiler
// from fusing the product and the sum, which numpy rounds apart).
inline float Interpolate(float lo, float hi, double frac) {
  volatile double step = static_cast<double>(hi - lo) * frac;
  return static_cast<float>(static_cast<double>(lo) + step);
}

// Where a thread expects the percentiles of its next row of a gate: per
// percentile a range of values [lo, hi]. A gate's values move little from
// one step to the next, so a row's percentiles mostly lie in ranges
// centred on the previous row's, and one pass that counts the values below
// each range and gathers those within leaves a few hundred values to select
// from instead of all of them. A range reaches as far below and above its
// percentile's two values as the n / kMargin values next to them did where
// last measured (a row whose percentile had to be found among all its
// values). A percentile not in its range (the first row, a jump) is found
// among all the values. Either way the same value at the same rank: the
// guide changes only how fast.
struct Guide {
  bool valid = false;
  float lo[3], hi[3];        // the ranges
  float below[3], above[3];  // their reach below the lower value and above the upper
};
constexpr int64_t kMargin = 64;  // values per margin: n / kMargin

#if (defined(__AVX512F__) && defined(__AVX512BW__)) || defined(__AVX2__)
#define SEQVG_GUIDED_SELECT 1
// One pass over a[0..n) (no NaN): below[k] the values < g.lo[k]; inside[k]
// (n + 16 slots: a store may run 15 past) gets the values in [g.lo[k],
// g.hi[k]], within[k] their number.
inline void Gather(const float* a, int64_t n, const Guide& g, int64_t* below, float* const* inside,
                   int64_t* within) {
  int64_t i = 0;
#if defined(__AVX512F__) && defined(__AVX512BW__)
  __m512 lo[3], hi[3];
  for (int k = 0; k < 3; ++k) {
    lo[k] = _mm512_set1_ps(g.lo[k]);
    hi[k] = _mm512_set1_ps(g.hi[k]);
    below[k] = within[k] = 0;
  }
  for (; i + 16 <= n; i += 16) {
    const __m512 x = _mm512_loadu_ps(a + i);
    for (int k = 0; k < 3; ++k) {
      const __mmask16 under = _mm512_cmp_ps_mask(x, lo[k], _CMP_LT_OQ);
      const __mmask16 in = _mm512_mask_cmp_ps_mask(static_cast<__mmask16>(~under), x, hi[k], _CMP_LE_OQ);
      below[k] += __builtin_popcount(under);
      _mm512_storeu_ps(inside[k] + within[k], _mm512_maskz_compress_ps(in, x));
      within[k] += __builtin_popcount(in);
    }
  }
#else
  __m256 lo[3], hi[3];
  for (int k = 0; k < 3; ++k) {
    lo[k] = _mm256_set1_ps(g.lo[k]);
    hi[k] = _mm256_set1_ps(g.hi[k]);
    below[k] = within[k] = 0;
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(a + i);
    for (int k = 0; k < 3; ++k) {
      const unsigned under = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(x, lo[k], _CMP_LT_OQ)));
      const unsigned upto = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(x, hi[k], _CMP_LE_OQ)));
      below[k] += __builtin_popcount(under);
      within[k] += LeftPack(inside[k] + within[k], x, upto & ~under & 0xffu);
    }
  }
#endif
  for (; i < n; ++i)
    for (int k = 0; k < 3; ++k) {
      if (a[i] < g.lo[k]) ++below[k];
      else if (a[i] <= g.hi[k]) inside[k][within[k]++] = a[i];
    }
}
#endif

// out[0..4): the mean and the 10th, 50th and 90th percentiles of a[0..n)
// (reordered), as seqvg.why's numpy version computes them: a row with a NaN
// is sorted whole, NaNs last, as numpy sorts it. guide: the thread's guide
// for this gate, updated for its next row.
inline void Row(float* a, int64_t n, float* out, Scratch* scratch, Guide* guide) {
  out[0] = static_cast<float>(Mean(a, n));
  const double q[3] = {0.1, 0.5, 0.9};
  int64_t ranks[6];
  double frac[3];
  for (int k = 0; k < 3; ++k) {
    // Rounded before the subtraction below, as numpy's: the volatile keeps
    // a compiler from fusing the two into one FMA (GCC 12 did, in a
    // restructured Row, a last-bit change in a percentile).
    const volatile double rounded = q[k] * static_cast<double>(n - 1);
    const double pos = rounded;
    const int64_t lo = static_cast<int64_t>(std::floor(pos));
    ranks[2 * k] = lo;
    ranks[2 * k + 1] = std::min(lo + 1, n - 1);
    frac[k] = pos - static_cast<double>(lo);
  }
  float v[6];
  if (HasNaN(a, n)) {
    std::sort(a, a + n, [](float x, float y) { return x < y || (y != y && x == x); });
    for (int k = 0; k < 6; ++k) v[k] = a[ranks[k]];
    guide->valid = false;
  } else {
#ifdef SEQVG_GUIDED_SELECT
    const int64_t margin = n / kMargin;
#else
    const int64_t margin = 0;  // no guide to set: each percentile's own two values only
#endif
    bool found[3] = {false, false, false};
#ifdef SEQVG_GUIDED_SELECT
    if (guide->valid) {
      float* inside[3];
      for (int k = 0; k < 3; ++k) inside[k] = Scratch::Sized(scratch[0].inside[k], n + 16);
      int64_t below[3], within[3];
      Gather(a, n, *guide, below, inside, within);
      for (int k = 0; k < 3; ++k) {
        const int64_t local[2] = {ranks[2 * k] - below[k], ranks[2 * k + 1] - below[k]};
        if (local[0] < 0 || local[1] >= within[k]) continue;
        Select(inside[k], within[k], local, 2, v + 2 * k, scratch);
        guide->lo[k] = v[2 * k] - guide->below[k];
        guide->hi[k] = v[2 * k + 1] + guide->above[k];
        found[k] = true;
      }
    }
#endif
    // The rest among all the values, with their margins.
    int64_t rest[kMaxRanks];
    int m = 0;
    for (int k = 0; k < 3; ++k)
      if (!found[k]) {
        rest[m++] = std::max<int64_t>(ranks[2 * k] - margin, 0);
        rest[m++] = ranks[2 * k];
        rest[m++] = ranks[2 * k + 1];
        rest[m++] = std::min(ranks[2 * k + 1] + margin, n - 1);
      }
    if (m > 0) {
      float got[kMaxRanks];
      Select(a, n, rest, m, got, scratch);
      for (int k = 0, j = 0; k < 3; ++k)
        if (!found[k]) {
          v[2 * k] = got[j + 1];
          v[2 * k + 1] = got[j + 2];
          guide->below[k] = got[j + 1] - got[j];
          guide->above[k] = got[j + 3] - got[j + 2];
          guide->lo[k] = got[j];
          guide->hi[k] = got[j + 3];
          j += 4;
        }
    }
    guide->valid = true;
  }
  for (int k = 0; k < 3; ++k) out[1 + k] = Interpolate(v[2 * k], v[2 * k + 1], frac[k]);
}

}  // namespace gatestats

// values: the cache that holds a sequence op's gates (kernels.gate_views):
// act (T, G u, B), G rows [i, f, g, o, tanh c] (LSTM) or [z, r, hh, hr]
// (GRU) per unit of each of the `blocks` blocks; the RNN's s (T+1, K, B),
// whose rows [0, u) of s[t+1] hold h_t, whose gate is tanh'(a_t) = 1 - h_t^2.
// Output: stats (gates, 4, T), the gates of why.GATES in its order (LSTM
// forget, input; GRU keep z; RNN dphi), along axis 1 mean, p10, p50, p90.
// Each (gate, t) row is computed by one thread: any thread count gives the
// same numbers.
REGISTER_OP("SeqvgGateStats")
    .Input("values: float")
    .Input("blocks: int32")
    .Attr("cell: {'rnn', 'gru', 'lstm'}")
    .Attr("units: int >= 1")
    .Attr("max_threads: int = 0")
    .Output("stats: float")
    .SetShapeFn([](InferenceContext* ctx) {
      ShapeHandle values;
      TF_RETURN_IF_ERROR(ctx->WithRank(ctx->input(0), 3, &values));
      std::string cell;
      TF_RETURN_IF_ERROR(ctx->GetAttr("cell", &cell));
      DimensionHandle steps = ctx->Dim(values, 0);
      if (cell == "rnn") TF_RETURN_IF_ERROR(ctx->Subtract(steps, 1, &steps));
      ctx->set_output(0, ctx->MakeShape({cell == "lstm" ? 2 : 1, 4, steps}));
      return absl::OkStatus();
    });

class SeqvgGateStatsOp : public OpKernel {
 public:
  explicit SeqvgGateStatsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("cell", &cell_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("units", &units_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("max_threads", &max_threads_));
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& values = ctx->input(0);
    const Tensor& blocks = ctx->input(1);
    const bool rnn = cell_ == "rnn", lstm = cell_ == "lstm";
    const int64_t U = units_, per_unit = rnn ? 1 : lstm ? 5 : 4;
    OP_REQUIRES(ctx, values.dims() == 3 && blocks.NumElements() == 1,
                absl::InvalidArgumentError("values must be a sequence op's cache, blocks its block count"));
    const int64_t V = blocks.flat<int32_t>()(0), rows = values.dim_size(1), B = values.dim_size(2);
    const int64_t T = values.dim_size(0) - (rnn ? 1 : 0);
    OP_REQUIRES(ctx, V >= 1 && U % V == 0 && T >= 0 && (rnn ? rows > U : rows == per_unit * U),
                absl::InvalidArgumentError("values do not hold this cell's gates for these units and blocks"));
    const int gates = lstm ? 2 : 1;
    // The gate's row within a block's per_unit rows: LSTM forget 1, input 0; GRU z 0.
    const int64_t gate_row[2] = {lstm ? 1 : 0, 0};
    Tensor* stats;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({gates, 4, T}), &stats));
    const int64_t n = U * B, up = U / V;
    const float* src = Data(values);
    float* out = Data(stats);
    const int threads = ctx->device()->tensorflow_cpu_worker_threads()->num_threads;
    std::vector<std::vector<float>> values_of(std::max(threads, 1));
    std::vector<std::vector<gatestats::Scratch>> scratch(std::max(threads, 1),
                                                          std::vector<gatestats::Scratch>(gatestats::kDepth));
    // Per thread and gate: rows come to a thread in step order within each gate.
    std::vector<std::array<gatestats::Guide, 2>> guides(std::max(threads, 1));
    ForBlocks(ctx, max_threads_, gates * T, [&](int p, int64_t item) {
      const int g = static_cast<int>(item / std::max<int64_t>(T, 1));
      const int64_t t = item % T;
      std::vector<float>& a = values_of[p];
      a.resize(n);
      if (rnn) {
        // tanh'(a_t) = 1 - h_t^2, each rounded in float32 as numpy's
        // 1.0 - h * h: the square stored first, so that no compiler fuses it.
        const float* h = src + (t + 1) * rows * B;
        for (int64_t i = 0; i < n; ++i) a[i] = h[i] * h[i];
        for (int64_t i = 0; i < n; ++i) a[i] = 1.f - a[i];
      } else {
        for (int64_t v = 0; v < V; ++v)
          std::copy_n(src + (t * rows + (v * per_unit + gate_row[g]) * up) * B, up * B, a.data() + v * up * B);
      }
      float row[4];
      gatestats::Row(a.data(), n, row, scratch[p].data(), &guides[p][g]);
      for (int k = 0; k < 4; ++k) out[(g * 4 + k) * T + t] = row[k];
    });
  }

 private:
  std::string cell_;
  int64_t units_;
  int max_threads_;
};

REGISTER_KERNEL_BUILDER(Name("SeqvgGateStats").Device(tensorflow::DEVICE_CPU), SeqvgGateStatsOp);
