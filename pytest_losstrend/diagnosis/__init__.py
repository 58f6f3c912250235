"""Why a curve failed: the diagnosis rules, what ``watch`` saw, and the messages.

``check`` (:func:`pytest_losstrend.check`: judge a curve and diagnose it from the curve alone),
``rules`` (the built-in rules and their stated order), ``watch_rules`` (root causes only
``watch`` can see) and ``curve_rules`` (causes the verdict's kind points at), ``signals``
(figures several rules read), ``context`` (``DiagnosisContext``, what a rule reads),
``ranking`` (one diagnosis per cause, most likely first; passing warnings), ``evidence`` (the
plain record a watcher fills) and ``messages`` (failure messages and sparklines). Numpy and
plain data only; it imports the ``verdict`` layer below it and no framework.
"""
