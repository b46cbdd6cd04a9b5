// seqvg's fused LSTM cell for TensorFlow on a CPU: the elementwise maths of
// one LSTM step, and of its gradient, as one op each. The matmul stays
// TensorFlow's (oneDNN); these ops replace the ~25 small elementwise ops per
// timestep that each pay TensorFlow's per-op cost. Built and loaded by
// seqvg/kernels.py; the Python side registers the gradient and checks it
// against Keras's LSTM (tests/test_kernels.py).
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
