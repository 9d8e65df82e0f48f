"""Snapshots of long streams, declared in the model: `Element.snapshot_every`.

A snapshot is an element's state at a revision, stored beside its stream (`commands.store.snapshots`)
so that loading the stream reads the latest snapshot and only the events after it. It is only ever a
cache: every answer is the same without it. Its `shape` fingerprints what the state is made of (the
element's attributes, its events' Changes and versions): a model change that alters an element's
state gives it another shape, and snapshots of the old one are never read.
"""

from __future__ import annotations

import hashlib

from commands.model.language import Element

MIN_SNAPSHOT_EVERY = 2


def state_shape(element: Element) -> str:
    """What the element's state is made of, fingerprinted: snapshots of another shape are ignored."""
    made_of = (
        element.name,
        element.attributes,
        tuple((d.name, d.change, d.history) for d in element.all_events()),
        element.retired,
    )
    return hashlib.sha256(repr(made_of).encode()).hexdigest()[:32]


def check_snapshots(element: Element) -> None:
    """A declaration that cannot work fails when the model is built, naming the element."""
    every = element.snapshot_every
    if every is None:
        return
    if every < MIN_SNAPSHOT_EVERY:
        raise ValueError(f"{element.name}.snapshot_every must be at least {MIN_SNAPSHOT_EVERY}, got {every}")
    personal = [a.name for a in element.attributes if a.personal]
    if personal:
        raise ValueError(
            f"{element.name} has personal attributes ({', '.join(personal)}): a snapshot would keep them "
            "in the clear past an erasure, so it cannot declare snapshot_every"
        )
