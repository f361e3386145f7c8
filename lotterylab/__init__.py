"""lotterylab: lottery tickets, constructed with guarantees, found in practice, verified."""

__version__ = "0.2.0"

from . import threads  # noqa: E402,F401  (first: numba must not reset torch's thread count)
from .construct import construct  # noqa: E402  (the function; the package is lotterylab.construct.*)
from .masks import Mask  # noqa: E402
from .planted import plant  # noqa: E402
from .runs import load_run  # noqa: E402
from .tickets import Ticket, load_ticket  # noqa: E402
from .universal import construct_universal, load_universal  # noqa: E402
from .verification import verify  # noqa: E402

__all__ = ["Mask", "Ticket", "construct", "construct_universal", "load_run", "load_ticket", "load_universal", "plant",
           "verify", "__version__"]
