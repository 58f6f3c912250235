"""Where training meets the package: the only layer that touches torch or tensorflow.

``recorder`` (recording the series, fail-fast, judging them), ``convert`` (recorded values to
floats), ``torch_watch`` and ``keras_watch`` (the watchers, with ``torch_sampling``,
``torch_signals`` and ``keras_signals`` holding their parts), ``keras`` (the Keras callback),
``sharpness`` (lambda_max by Hessian-vector products), ``seeding``, ``keras_shuffle`` (Keras
``fit`` on arrays reshuffled every epoch under the seed) and ``references`` (the reference
level of a torch or Keras loss on its targets). Every framework is
imported lazily, inside the function that needs it. It may import ``diagnosis`` and
``verdict``; nothing above.
"""
