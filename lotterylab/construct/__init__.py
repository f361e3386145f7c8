"""Strong lottery tickets by construction: prune one fixed random source network to approximate a target.

``lotterylab.construct(target, mode="L+1", eps=0.01, seed=0, domain=(-1, 1))`` is the entry point
(:func:`~lotterylab.construct.construction.construct`). Data flows one way: the target is read into
a :class:`~lotterylab.graph.LayerGraph` (:mod:`.inputs`), a **family** (:mod:`.families`, a
registry: ``"L+1"``, ``"2L"``) lays out the random source (:mod:`.source`, drawn by
:mod:`.sizes`), the shared **engine** (:mod:`.engine`, with :mod:`.tables` and :mod:`.growth`)
solves every subset sum and records it in a per-layer :mod:`.ledger`, the first-layer scheme
(:mod:`.first_layer`) decides what univariate copies are worth, refinements on data
(:mod:`.refine`) hook in, the :mod:`.certificate` bounds the error, :mod:`.report` builds the
ticket, and a sampled check of its output error flags a ticket far from its target
(:class:`TicketWarning`).
"""

from .config import ConstructionConfig, ConstructionError
from .construction import FAR_FROM_TARGET, MIN_AGREEMENT, TicketWarning, construct, run
from .families import FAMILIES, Family, register_family

__all__ = ["FAMILIES", "FAR_FROM_TARGET", "MIN_AGREEMENT", "ConstructionConfig", "ConstructionError", "Family", "TicketWarning",
           "construct", "register_family", "run"]
