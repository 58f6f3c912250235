"""Plain data in, files out: the term, JSON, Markdown and HTML reports and the baselines.

``schema`` (the document's types, TypedDicts checked against the shipped JSON Schema: what
every other module here, the glue and the catalogue pass around), ``report`` (the document,
the terminal and Markdown tables), ``rows`` (what a table row and an
outcome say), ``files`` (atomic writes), ``html`` (the self-contained page) with ``html_chart``
(its SVG charts), and ``baseline`` (curve baselines: comparison, gating and settings) with
``baseline_files`` (the file format, validation, locked saves) and ``baseline_metrics`` (gates
and the metrics they compare). Built from the JSON document alone; imports no framework, and
only ``diagnosis`` and ``verdict`` of the package.
"""
