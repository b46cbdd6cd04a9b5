"""One step of a Keras recurrent cell, written out: the maths the probe re-runs.

    from seqvg.cellstep import fast_kind, step
    kind = fast_kind(layer.cell)        # 'rnn', 'lstm', 'gru' or None
    new_states = step(kind, layer.cell, x_t, states, tap=lambda k, s: s)

The gradient probe (``seqvg.probe``) and the gate and Jacobian statistics
(``seqvg.stepstats``) both run a layer's own cell step by step with every new
state handed to a callback; this module is the step they share.
"""

from __future__ import annotations


def fast_kind(cell) -> str | None:
    """'rnn', 'lstm' or 'gru' when the probe runs ``cell`` with ``step``.

    The fast path covers the cells seqvg builds (fused gate matrices, GRU with
    reset_after, no dropout); anything else runs the cell's own ``call``.
    """
    import keras

    if getattr(cell, "dropout", 0.0) or getattr(cell, "recurrent_dropout", 0.0):
        return None
    if type(cell) is keras.layers.SimpleRNNCell:
        return "rnn"
    if type(cell) is keras.layers.LSTMCell and cell.implementation != 1:
        return "lstm"
    if type(cell) is keras.layers.GRUCell and cell.implementation != 1 and cell.reset_after:
        return "gru"
    return None


def step(kind: str, cell, x_t, states, tap, gates: dict | None = None):
    """One step of a Keras cell with each new state passed through ``tap(k, s)``.

    The ops are those of the Keras cells' fused implementation (Keras 3.x
    ``SimpleRNNCell``/``LSTMCell``/``GRUCell.call``), minus what the probe
    never uses (dropout, masking). For LSTM, c is tapped *before*
    h = o*act(c): tapping the c that the cell returns would measure only the
    carry path c_t -> c_{t+1} (zero at t = T-1), while the BPTT delta_c_t also
    runs through h_t. With ``gates`` (a dict), the step also stores there the
    values that gate the gradient (``seqvg.why``): LSTM ``forget`` and
    ``input``, GRU ``keep`` (Keras's z), vanilla ``dphi`` (here a_t itself).
    """
    import tensorflow as tf

    h_prev = states[0]
    xp_t = tf.matmul(x_t, cell.kernel)
    if kind == "rnn":
        if cell.use_bias:
            xp_t = xp_t + cell.bias
        a = xp_t + tf.matmul(h_prev, cell.recurrent_kernel)
        if gates is not None:
            gates["dphi"] = a  # the pre-activation; seqvg.why takes phi'(a) after the loop
        return [tap(0, cell.activation(a))]
    if kind == "lstm":
        c_prev = states[1]
        z = xp_t + tf.matmul(h_prev, cell.recurrent_kernel)
        if cell.use_bias:
            z = z + cell.bias
        z_i, z_f, z_c, z_o = tf.split(z, 4, axis=1)
        i = cell.recurrent_activation(z_i)
        f = cell.recurrent_activation(z_f)
        if gates is not None:
            gates["forget"], gates["input"] = f, i
        c = tap(1, f * c_prev + i * cell.activation(z_c))
        o = cell.recurrent_activation(z_o)
        return [tap(0, o * cell.activation(c)), c]
    inner = tf.matmul(h_prev, cell.recurrent_kernel)
    if cell.use_bias:
        xp_t = xp_t + cell.bias[0]
        inner = inner + cell.bias[1]
    x_z, x_r, x_h = tf.split(xp_t, 3, axis=1)
    r_z, r_r, r_h = tf.split(inner, 3, axis=1)
    z = cell.recurrent_activation(x_z + r_z)
    r = cell.recurrent_activation(x_r + r_r)
    hh = cell.activation(x_h + r * r_h)
    if gates is not None:
        gates["keep"] = z
    return [tap(0, z * h_prev + (1 - z) * hh)]


def initial_states(layer, batch: int) -> list:
    """The zero (or the cell's own) initial states of a ``keras.layers.RNN``,
    as a flat list; cells without ``get_initial_state`` get zeros of
    ``state_size``, as in Keras's own loop."""
    import tensorflow as tf

    return tf.nest.flatten(layer.get_initial_state(batch))


def call_cell(cell, x_t, states) -> tuple:
    """One step of any Keras RNN cell by its own ``call``, as
    ``keras.layers.RNN`` makes it (``training`` only where ``call`` takes it).

    Returns:
        (output, new states as a flat list).
    """
    import tensorflow as tf

    kwargs = {"training": False} if getattr(cell, "_call_has_training_arg", False) else {}
    output, new = cell(x_t, list(states), **kwargs)
    return output, tf.nest.flatten(new)


def output_size(cell) -> int:
    """Width of a cell's output: ``output_size``, else the first state's."""
    import tensorflow as tf

    return getattr(cell, "output_size", None) or tf.nest.flatten(cell.state_size)[0]
