"""The verdict: is this loss curve healthy? Pure numpy and plain Python.

``stats`` (robust statistics), ``criteria`` (what a test asks for), ``constants`` (the
calibrated constants), ``figures`` (the figures shared by the rules), ``rules`` (the checks, one
named rule each, in order), ``trend`` (the verdict itself: runs the rules), ``judgment`` (every
series of a test judged once), ``reference`` (the loss of the best constant predictor on a
run's targets) and ``result`` (``Verdict`` and ``Diagnosis``). The bottom layer:
it imports numpy and nothing else of the package's, and never a framework.
"""
