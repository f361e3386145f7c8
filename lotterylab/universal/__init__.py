"""Universal lottery tickets (Burkholz, Laha, Mukherjee, Gotovos, ICLR 2022): one pruned random
network whose features serve a whole function family; learning a task is one linear solve.

* basis networks: :func:`univariate` (any 1-D function), :func:`monomials`, :func:`fourier`,
  :func:`lipschitz` (:mod:`.basis`, :mod:`.families`);
* :func:`construct_universal` prunes one random source into a basis within ``eps`` (:mod:`.prune`)
  and returns a :class:`UniversalTicket` (``features``, ``fit_readout``, ``readout_error``, ``save``);
* :func:`sample_tasks`: random members of the family, for the universality check (:mod:`.tasks`).
"""

from .basis import FAMILIES, Basis, BasisError, Univariate, univariate
from .families import fourier, lipschitz, monomials
from .prune import UniversalError
from .tasks import TaskBatch, sample_tasks
from .ticket import Readout, UniversalTicket, construct_universal, load_universal

__all__ = ["FAMILIES", "Basis", "BasisError", "Readout", "TaskBatch", "Univariate", "UniversalError",
           "UniversalTicket", "construct_universal", "fourier", "lipschitz", "load_universal", "monomials",
           "sample_tasks", "univariate"]
