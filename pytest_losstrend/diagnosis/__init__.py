"""Why a curve failed: the diagnosis rules, what ``watch`` saw, and the messages.

``rules`` (the built-in cause rules and their ranking), ``evidence`` (the plain record a watcher
fills) and ``messages`` (failure messages and sparklines). Numpy and plain data only; it imports
the ``verdict`` layer below it and no framework.
"""
