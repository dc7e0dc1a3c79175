"""Python's start-up hook in sandboxes: seed :mod:`random` when the world asks.

Python seeds :mod:`random` from the operating system at import, so a program that draws
from it (a cache that evicts at random, a test that shuffles) prints something else on
every run, and a recorded turn can never replay, nor a test's verdict repeat. A world
that wants them to sets ``PIVOTGYM_RANDOM_SEED`` in its sandboxes' environment, as it
sets ``PYTHONHASHSEED``; every Python process started there then begins from that seed.
Programs that seed themselves, or draw from ``os.urandom`` or :mod:`secrets`, are not
affected. Without the variable this hook does nothing (no import of :mod:`random`).

bwrap installs this file where Debian's interpreters import ``sitecustomize`` from (the
sandboxes' ``/etc/python3.X``); an image whose world sets the variable copies it into
its standard library's folder (the SWE image does); host-side runs that must agree with
sandboxes put this folder first on ``PYTHONPATH``.
"""

import os

_seed = os.environ.get("PIVOTGYM_RANDOM_SEED")
if _seed is not None:
    import random

    random.seed(_seed)
del _seed
