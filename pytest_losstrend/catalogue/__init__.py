"""Known-bad training configurations: the catalogue, its scenarios, the mutations and
``losstrend.fit``.

``entries`` (the catalogue and its docs page), ``scenarios`` (each entry: the registry and the
runner; the training runs and healthy twins in ``scenarios_torch`` and ``scenarios_keras``, their
data in ``scenario_data``), ``mutate`` (``--losstrend-mutate``), ``fit`` (the built-in training
loop: the dispatch, with ``fit_torch``, ``fit_keras`` and their shared ``fit_checks``) and
``_catalogue_tests`` (collected by ``--losstrend-catalogue``). Its builders train torch and Keras
models; it may import every layer below the pytest glue.
"""
