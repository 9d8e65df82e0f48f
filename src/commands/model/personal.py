"""Personal data in the model: attributes marked `personal`, and the erasure each such element gets.

An element with personal attributes is a data subject's (a Person; an Organisation's contact data).
From the marks the model derives, with no code per element:

* `erasable`: the element's `Erase<Element>` command and `<Element>Erased` event. The event
  carries only the element's id; its Change clears the personal attributes and the account's own
  (`Custom`) ones, and sets the status `Erased`, after which every other command on the element
  is refused and the erasure itself answers as it first did (`commands.handlers`).
* `personal_data`: which fields of which events feed personal attributes, and their `Custom`
  values (sealed on append with the subject's key, `commands.store.sealing`), and which events
  are erasures (their append deletes the key).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from commands.model.language import Attr, Change, CommandDecl, Element, EventDecl, Type
from commands.store.sealing import PersonalData

CUSTOM = "Custom"
ERASED = "Erased"
"""An erased element's status."""


def personal_attributes(element: Element) -> tuple[str, ...]:
    return tuple(a.name for a in element.attributes if a.personal)


def identity(element: Element) -> Attr:
    """The element's own id attribute (its stream's key)."""
    for attr in element.attributes:
        if attr.type is Type.ID and attr.references == element.name:
            return attr
    raise ValueError(f"{element.name} has personal attributes but no id of its own to erase it by")


def erasable(element: Element) -> Element:
    """The element with its erasure command and event, if it has personal attributes."""
    personal = personal_attributes(element)
    if not personal or any(c.erases for c in element.commands):  # none, or given already
        return element
    key = identity(element)
    event = f"{element.name}Erased"
    return replace(
        element,
        commands=(
            *element.commands,
            CommandDecl(
                f"Erase{element.name}",
                (key,),
                event,
                key=key.name,
                erases=True,
                description=(
                    f"Erase a {element.name}'s personal data ({', '.join(personal)}): its key is "
                    "deleted, so no event, read model or export shows them again. Erasing again "
                    "answers as the first time."
                ),
            ),
        ),
        events=(
            *element.events,
            EventDecl(event, (key,), Change(clear=personal, clear_custom=True, status=ERASED)),
        ),
    )


def personal_fields(element: Element, decl: EventDecl) -> tuple[str, ...]:
    """The event's payload fields that feed personal attributes, and its `Custom` values: an
    account's own attributes of a data subject may be personal too, and nothing says they are not."""
    personal = set(personal_attributes(element))
    if not personal:
        return ()
    change = decl.change
    fields = [name for name in change.set if name in personal]
    fields += [source for attr, source in (*change.copy, *change.append) if attr in personal]
    return (*dict.fromkeys(fields), CUSTOM)


def personal_data(elements: Sequence[Element]) -> PersonalData:
    return PersonalData(
        fields={
            (e.stream_type, d.name): fields
            for e in elements
            for d in e.all_events()
            if (fields := personal_fields(e, d))
        },
        erasures=frozenset((e.stream_type, c.event) for e in elements for c in e.commands if c.erases),
    )
