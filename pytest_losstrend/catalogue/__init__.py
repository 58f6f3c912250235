"""Known-bad training configurations: the catalogue, its scenarios, the mutations and
``losstrend.fit``.

``entries`` (the catalogue and its docs page), ``scenarios`` (each entry's real training run and
healthy twin), ``mutate`` (``--losstrend-mutate``), ``fit`` (the built-in training loop) and
``_catalogue_tests`` (collected by ``--losstrend-catalogue``). Its builders train torch and Keras
models; it may import every layer below the pytest glue.
"""
