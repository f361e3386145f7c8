"""Growing the source by real neurons, and the constant neurons that carry biases.

Growth never redraws a value: new rows and columns come from the grid-addressed streams
(:mod:`lotterylab.construct.source`). Layers joined by row-by-row skips (the L+1 residual layout)
grow together, so row ``r`` of each stays a copy of the same target channel.
"""

from __future__ import annotations

import torch

from .. import activations as acts_mod
from .source import SourceLayer


def grow_unit(e, P: SourceLayer, units: list[int]) -> None:
    """One more candidate neuron for each of ``units`` in layer P (and its own solution if P is a copy layer)."""
    if P.unit_rows:  # two copies per unit: with the sign trick each lands on a random side
        units = [j for j in units for _ in range(2)]
        new = e.src.add_rows(P, len(units))
        for r, j in zip(new, units):
            P.unit_rows[j].append(r)
        P.mW[torch.tensor(new), torch.tensor(units), 0] = True
    else:
        group = joined(e, P)
        added = {}
        for M in group:
            added[M.index] = e.src.add_rows(M, len(units))
            e.fit(M)
            e.ledgers[M.index].neuron[torch.tensor(added[M.index])] = torch.tensor(units)
        for M in group:
            e.solve_rows(M, e.src.layers[M.reads], added[M.index])
            for r, j in zip(added[M.index], units):
                M.copy_rows[j].append(r)
        new = [r for rs in added.values() for r in rs]
    e.src.grown += len(new)


def joined(e, P: SourceLayer) -> list[SourceLayer]:
    """P and every layer joined to it by row-by-row skips (L+1 residual), in build order."""
    seen, todo = {P.index}, [P.index]
    while todo:
        for k in e.src.layers[todo.pop()].links:
            if k not in seen:
                seen.add(k)
                todo.append(k)
    return [e.src.layers[k] for k in sorted(seen)]


def partner(e, P: SourceLayer) -> SourceLayer | None:
    """The copy layer P adds row by row (families that join rows, e.g. L+1 residual), if any."""
    if P.add_from is None or P.add_from < 0 or P.add_from not in e.ledgers or not e.family.joins_rows:
        return None
    return e.src.layers[P.add_from]


def const_value(e, P: SourceLayer, rows: torch.Tensor) -> torch.Tensor:
    """Output of constant rows of P (its bias, plus the constant added by a row-by-row skip)."""
    z = P.b[rows].double().cpu()
    other = partner(e, P)
    if other is not None and other.act is not None:  # (a linear shortcut's constant rows are pruned: 0)
        z = z + const_value(e, other, rows)
    act = acts_mod.get(P.act) if P.act else acts_mod.get("identity")
    return act(z)


def keep_constant(e, P: SourceLayer, rows: torch.Tensor) -> None:
    """Constants in use keep their bias, and so do the constants their skip adds."""
    P.mb[rows] = True
    other = partner(e, P)
    if other is not None and other.act is not None:
        keep_constant(e, other, rows)


def grow_constants(e, P: SourceLayer, n: int = 2) -> None:
    for M in joined(e, P):  # (joined layers keep equal layouts)
        new = e.src.add_rows(M, n)
        M.const_rows.extend(new)
        if M.index in e.ledgers:
            e.fit(M)
        e.src.grown += len(new)
