"""The ERP's upcasters: how events stored in an older shape are read in today's.

Stored events never change (invariant 6). When an event's shape changes, declare the step from
its old version here, beside the model that raises it::

    UPCASTERS.register("Renamed", 1, lambda payload: ("Renamed", {"Name": payload["NewName"]}))

Every reader decodes through these (`commands.store.feed`): loading an aggregate, the projectors,
rebuilds. New events are stored at the version after the last step declared for their name.
No ERP event has changed shape yet.
"""

from __future__ import annotations

from commands.store.upcasting import Upcasters

UPCASTERS = Upcasters()
