"""lotterylab: lottery tickets, constructed with guarantees, found in practice, verified."""

__version__ = "0.1.0"

from .masks import Mask  # noqa: E402
from .tickets import Ticket, load_ticket  # noqa: E402

__all__ = ["Mask", "Ticket", "load_ticket", "__version__"]
