"""Faster CPU loops for Keras's own LSTM and GRU layers: same weights, same maths.

    python benchmarks/train_speed.py --cells lstm      # seqvg vs PyTorch
    python benchmarks/lstm_loop.py                     # vs Keras's own loop

On a CPU, TensorFlow runs Keras's LSTM loop as about fourteen small ops per
timestep, each paying the executor's and Eigen's per-op cost on (batch x 4
units) tensors. Where seqvg's compiled ops are built (``seqvg.kernels``), the
whole sequence is one op forward and one backward (``kernels.lstm_seq``): the
units are cut into a fixed number of blocks (set by the unit count, not by
the thread count, so that every thread count sums in the same order and
gives bit-identical numbers), each thread owns some blocks and the threads
meet once per timestep; the input projection and the bias join the recurrent
matmul (``W_all @ [h; x_t; 1]``, ``W_all = [R; W; b]^T``); the weight
gradient accumulates in each block's own rows.

Where they are not (no C++ compiler), the same maths runs as a loop of
TensorFlow ops with the state transposed, (units, batch): the gates as three
matmuls ([i, f], c, o) into which oneDNN fuses the activation (MatMul + a
zero BiasAdd + Sigmoid/Tanh), row-block splits that share their buffer, and,
for sequences of up to ``execpath.UNROLL_MAX`` timesteps, the loop unrolled
into the graph. The gradient probe (``seqvg.probe``) taps every state
through the sequence op where training runs it (its ``taps`` input; a tanh
vanilla layer through the RNN op, ``vanilla_covered``), else through its
own per-step ``tf.while_loop`` of the Keras cell.

Their speed against Keras's loop and PyTorch is the README's benchmark
table (``benchmarks/lstm_loop.py``, ``benchmarks/train_speed.py``). Outputs
and gradients agree with Keras's loop to 1e-5 relative
(``tests/test_fastlstm.py``, with and without the ops; the sequence op on 1,
2, 3 and 4 threads in ``tests/test_kernels.py``).

A GRU layer (Keras's ``reset_after=True``, its default) runs seqvg's GRU
sequence op (``kernels.gru_seq``, the same loop as the LSTM's) where the ops
are built, else Keras's own loop; it stays a plain ``keras.layers.GRU``.

The layer stays a plain ``keras.layers.LSTM`` (``model.keras`` loads without
seqvg): ``accelerate(model, path)`` swaps the loop of each LSTM or GRU layer
in one model object for the one ``path`` names. Which path that is
(``seqvg.execpath``) is decided once per run; on a GPU it is Keras's own
loop (cuDNN), as it is for configurations these loops do not cover (masks,
dropout, other activations).
"""

from __future__ import annotations

import functools
import types


def transposed_matrix(kernel, recurrent_kernel, bias):
    """``W_all = [R; W; b]^T``: (4u, u+d+1), row blocks in Keras's gate order [i, f, c, o].

    ``W_all @ [h; x_t; 1]`` is the step's gate pre-activation, transposed.
    """
    import tensorflow as tf

    return tf.transpose(tf.concat([recurrent_kernel, kernel, bias[None, :]], axis=0))


def transposed_weights(kernel, recurrent_kernel, bias):
    """The gate matrices of the transposed loop run as TensorFlow ops (``gates``).

    Args:
        kernel: (d, 4u) input weights, Keras gate order [i, f, c, o].
        recurrent_kernel: (u, 4u) recurrent weights.
        bias: (4u,) gate biases.

    Returns:
        (w_if, w_c, w_o): (2u, u+d+1) rows [i, f], and (u, u+d+1) rows c and
        o, so that ``w @ [h; x_t; 1]`` is those gates' pre-activation,
        transposed.
    """
    u = recurrent_kernel.shape[0]
    w_all = transposed_matrix(kernel, recurrent_kernel, bias)
    return w_all[: 2 * u], w_all[2 * u : 3 * u], w_all[3 * u :]


def fused(dtype) -> bool:
    """Whether seqvg's sequence ops (``seqvg.kernels``) can run a layer of ``dtype`` here.

    Not with a GPU: the ops have only CPU kernels (a GPU runs Keras's cuDNN
    loop).
    """
    import tensorflow as tf

    from seqvg import kernels

    return (dtype == "float32" and not tf.config.list_logical_devices("GPU")
            and kernels.op_module() is not None)


def gates(weights, zero, s):
    """Gate activations of one step, transposed.

    Three matmuls, not one: each carries one activation (sigmoid for [i, f]
    and o, tanh for c), and the two cores run them side by side. o is needed
    only at the end of the step, so its matmul is off the critical path,
    which makes this split faster than [i, f, o] | c.

    Args:
        weights: (w_if, w_c, w_o) from ``transposed_weights``.
        zero: (batch,) zeros: the BiasAdd that lets the activation fuse.
        s: (u+d+1, batch) the stacked [h_{t-1}; x_t; 1].

    Returns:
        (i, f, o, g), each (u, batch).
    """
    import tensorflow as tf

    w_if, w_c, w_o = weights
    i, f = tf.split(tf.sigmoid(tf.nn.bias_add(tf.matmul(w_if, s), zero)), 2, axis=0)
    g = tf.tanh(tf.nn.bias_add(tf.matmul(w_c, s), zero))
    o = tf.sigmoid(tf.nn.bias_add(tf.matmul(w_o, s), zero))
    return i, f, o, g


def run_loop(body, timesteps: int, state: tuple, unroll: bool, parallel_iterations: int = 10) -> tuple:
    """``state = body(t, *state)`` for t in range(timesteps), unrolled or as a while loop.

    Args:
        body: the step; t is a Python int when unrolled, a scalar tensor in a
            while loop.
        timesteps: the sequence length.
        state: the loop state (tensors, TensorArrays).
        unroll: whether to unroll (``ExecutionPath.unroll``).
        parallel_iterations: passed to ``tf.while_loop``.

    Returns:
        The final state.
    """
    import tensorflow as tf

    if unroll:
        for t in range(timesteps):
            state = body(t, *state)
        return state
    out = tf.while_loop(
        lambda t, *_: t < timesteps, lambda t, *s: (t + 1, *body(t, *s)), (tf.constant(0), *state),
        maximum_iterations=timesteps, parallel_iterations=parallel_iterations,
    )
    return tuple(out[1:])


def loop_inputs(sequences, kernel, recurrent_kernel, bias, unroll: bool):
    """What the transposed loop reads at every step.

    Args:
        sequences: (batch, T, d) inputs.
        kernel, recurrent_kernel, bias: the layer's weights (Keras layout).
        unroll: whether the loop is unrolled.

    Returns:
        (x_at, ones, weights, zero): ``x_at(t)`` gives the (d, batch) x_t^T,
        then the (1, batch) ones row, the gate matrices (``transposed_weights``)
        and the (batch,) zeros of the fusing BiasAdd (``gates``).
    """
    import tensorflow as tf

    xs = tf.transpose(sequences, [1, 2, 0])
    if unroll:
        x_at = tf.unstack(xs).__getitem__
    else:
        # A TensorArray, not slicing a captured tensor: the gradient of a slice
        # is a dense (T, d, batch) tensor per step, O(T^2) for a stacked layer.
        x_at = tf.TensorArray(xs.dtype, size=xs.shape[0], element_shape=xs.shape[1:]).unstack(xs).read
    batch = tf.shape(sequences)[:1]
    ones = tf.ones(tf.concat([[1], batch], axis=0), xs.dtype)
    weights = transposed_weights(kernel, recurrent_kernel, bias)
    return x_at, ones, weights, tf.zeros(batch, xs.dtype)


def lstm_loop(sequences, h0, c0, kernel, recurrent_kernel, bias, return_sequences: bool, unroll: bool):
    """Runs an LSTM over ``sequences`` with the transposed loop of TensorFlow ops.

    Args:
        sequences: (batch, T, d) inputs.
        h0, c0: (batch, u) initial states.
        kernel, recurrent_kernel, bias: the layer's weights (Keras layout).
        return_sequences: whether to keep every h_t.
        unroll: whether to unroll the loop.

    Returns:
        (last_output, outputs, [h_T, c_T]) as Keras's ``inner_loop`` returns
        them: outputs is (batch, T, u), or (batch, 1, u) without
        return_sequences.
    """
    import tensorflow as tf

    timesteps = sequences.shape[1]
    x_at, ones, weights, zero = loop_inputs(sequences, kernel, recurrent_kernel, bias, unroll)
    out_ta = tf.TensorArray(sequences.dtype, size=timesteps if return_sequences else 0)

    def body(t, h, c, out_ta):
        i, f, o, g = gates(weights, zero, tf.concat([h, x_at(t), ones], axis=0))
        c = f * c + i * g
        h = o * tf.tanh(c)
        if return_sequences:
            out_ta = out_ta.write(t, h)
        return h, c, out_ta

    h, c, out_ta = run_loop(body, timesteps, (tf.transpose(h0), tf.transpose(c0), out_ta), unroll=unroll)
    h, c = tf.transpose(h), tf.transpose(c)
    outputs = tf.transpose(out_ta.stack(), [2, 0, 1]) if return_sequences else h[:, None, :]
    return h, outputs, [h, c]


def covered(layer) -> str | None:
    """"lstm" or "gru" if ``layer`` is a Keras LSTM or GRU whose maths seqvg's
    loops compute exactly (the GRU's: ``reset_after=True``, Keras's default),
    else None."""
    import keras

    cell = getattr(layer, "cell", None)
    if keras.backend.backend() != "tensorflow" or not isinstance(layer, (keras.layers.LSTM, keras.layers.GRU)):
        return None
    if (type(cell) not in (keras.layers.LSTMCell, keras.layers.GRUCell) or not cell.use_bias or cell.dropout
            or cell.recurrent_dropout or layer.go_backwards or layer.unroll
            or cell.activation is not keras.activations.tanh
            or cell.recurrent_activation is not keras.activations.sigmoid):
        return None
    if isinstance(layer, keras.layers.LSTM):
        return "lstm" if type(cell) is keras.layers.LSTMCell else None
    return "gru" if type(cell) is keras.layers.GRUCell and cell.reset_after else None


def vanilla_covered(layer) -> bool:
    """Whether ``layer`` is a Keras SimpleRNN whose maths seqvg's RNN op
    (``kernels.rnn_seq``, the gradient probe's) computes exactly: tanh, a
    bias, no dropout."""
    import keras

    cell = getattr(layer, "cell", None)
    return (keras.backend.backend() == "tensorflow" and isinstance(layer, keras.layers.SimpleRNN)
            and type(cell) is keras.layers.SimpleRNNCell and cell.use_bias and not cell.dropout
            and not cell.recurrent_dropout and not layer.go_backwards and not layer.unroll
            and cell.activation is keras.activations.tanh)


def eligible(layer) -> bool:
    """Whether ``layer`` is an LSTM that seqvg's loops run (``covered``)."""
    return covered(layer) == "lstm"


def gru_eligible(layer) -> bool:
    """Whether ``layer`` is a GRU that seqvg's GRU sequence op runs (``covered``)."""
    return covered(layer) == "gru"


def _lstm_op_inner_loop(self, sequences, initial_state, mask, training=False):
    """``LSTM.inner_loop`` as seqvg's sequence op (forward and backward one op each)."""
    from seqvg import kernels

    if mask is not None:
        return type(self).inner_loop(self, sequences, initial_state, mask, training)
    cell = self.cell
    h_seq, h, c = kernels.lstm_seq(sequences, initial_state[0], initial_state[1], cell.kernel,
                                   cell.recurrent_kernel, cell.bias, self.return_sequences)
    return h, h_seq if self.return_sequences else h[:, None, :], [h, c]


def _lstm_tfops_inner_loop(self, sequences, initial_state, mask, training=False, *, unroll: bool):
    """``LSTM.inner_loop`` as ``lstm_loop``, the transposed loop of TensorFlow ops."""
    if mask is not None:
        return type(self).inner_loop(self, sequences, initial_state, mask, training)
    cell = self.cell
    return lstm_loop(sequences, initial_state[0], initial_state[1], cell.kernel, cell.recurrent_kernel, cell.bias,
                     self.return_sequences, unroll)


def _gru_op_inner_loop(self, sequences, initial_state, mask, training=False):
    """``GRU.inner_loop`` as seqvg's GRU sequence op."""
    from seqvg import kernels

    if mask is not None:
        return type(self).inner_loop(self, sequences, initial_state, mask, training)
    h0 = initial_state[0] if isinstance(initial_state, (list, tuple)) else initial_state
    cell = self.cell
    h_seq, h = kernels.gru_seq(sequences, h0, cell.kernel, cell.recurrent_kernel, cell.bias, self.return_sequences)
    return h, h_seq if self.return_sequences else h[:, None, :], [h]


def _lstm_layers(model):
    """Every layer of ``model``, wrapped ones (seqvg's Residual holds its
    recurrent layer in ``.layer``) included."""
    for outer in model.layers:
        for layer in (outer, getattr(outer, "layer", None)):
            if layer is not None:
                yield layer


def accelerate(model, path) -> int:
    """Gives every LSTM or GRU layer of ``model`` the loop ``path`` names.

    Only this model object changes (its layers' ``inner_loop``); weights,
    config and the saved ``model.keras`` stay those of Keras's layers. A
    masked call still runs Keras's own loop.

    Args:
        model: a Keras model.
        path: an ``seqvg.execpath.ExecutionPath``; with "keras" nothing changes.

    Returns:
        How many layers were given seqvg's loop.
    """
    if path.cell_path == "keras":
        return 0
    n = 0
    for layer in _lstm_layers(model):
        kind = covered(layer)
        if kind != path.cell:
            continue
        if path.cell_path == "seqvg-op":
            loop = _lstm_op_inner_loop if kind == "lstm" else _gru_op_inner_loop
        else:
            loop = functools.partial(_lstm_tfops_inner_loop, unroll=path.unroll)
        layer.inner_loop = types.MethodType(loop, layer)
        n += 1
    return n
