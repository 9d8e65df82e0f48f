"""The projector: batches (`batch`), their checkpoints (`checkpoints`), rebuilds (`rebuild`) and the
live loop that follows the store (`follow`)."""

from queries.projector.batch import REFUSED_BY_READ_MODEL, Projector
from queries.projector.checkpoints import Checkpoints, Lag
from queries.projector.follow import follow
from queries.projector.rebuild import Rebuilt, rebuild_account

__all__ = ["REFUSED_BY_READ_MODEL", "Checkpoints", "Lag", "Projector", "Rebuilt", "follow", "rebuild_account"]
