"""Finding tickets in practice: every finder returns a :class:`~lotterylab.masks.Mask` (or a
ticket file) and trains with :func:`lotterylab.training.train`.

* :mod:`.imp` — iterative magnitude pruning with rewinding and its controls;
* :mod:`.pai` — pruning at initialisation (SNIP, GraSP, SynFlow, magnitude, random/ER/ERK);
* :mod:`.early_bird` — early-bird ticket detection as a training callback;
* :mod:`.edge_popup` — strong tickets by score search on frozen random weights;
* :mod:`.scores` — scores to masks (global / layerwise, per-layer density schemes).
"""

from .imp import IMP, IMPConfig, imp  # noqa: F401
