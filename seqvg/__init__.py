"""seqvg: a recurrent-sequence long-dependency testbed.

    seqvg train --cell lstm --length 200
    seqvg probe --cell gru --length 200

Generates long-range tasks, trains vanilla RNN / LSTM / GRU models with Keras,
measures how the gradient decays back through time, and reports it.
"""

__version__ = "0.1.0"
