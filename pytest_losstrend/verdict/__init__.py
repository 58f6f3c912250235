"""The verdict: is this loss curve healthy? Pure numpy and plain Python.

``stats`` (robust statistics), ``criteria`` (what a test asks for), ``trend`` (the verdict
itself) and ``result`` (``Verdict`` and ``Diagnosis``). The bottom layer: it imports numpy and
nothing else of the package's, and never a framework.
"""
