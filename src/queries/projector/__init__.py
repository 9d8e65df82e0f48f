"""The projector: batches (`batch`), their checkpoints (`checkpoints`), the events they park
(`parking`), rebuilds (`rebuild`) and the live loop that follows the store (`follow`)."""

from queries.projector.batch import Projector
from queries.projector.checkpoints import Checkpoints, Lag
from queries.projector.follow import follow
from queries.projector.parking import REFUSED_BY_READ_MODEL
from queries.projector.rebuild import Rebuilt, rebuild_account

__all__ = ["REFUSED_BY_READ_MODEL", "Checkpoints", "Lag", "Projector", "Rebuilt", "follow", "rebuild_account"]
