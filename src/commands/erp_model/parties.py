"""The parties (Person and Organisation, both Entities), the Own Organisation and the Workarea."""

from __future__ import annotations

from dataclasses import replace

from commands.erp_model.common import ADDRESSES, NAME, NEW_ADDRESS, ref
from commands.model import (
    Attr,
    Change,
    CommandDecl,
    Element,
    EventDecl,
    Kind,
)


def party(name: str, *more: CommandDecl, personal_name: bool) -> Element:
    """A Person or an Organisation (both parties): registered, renamed, given addresses.

    Its email and addresses are personal data (an Organisation's are its contact's), and a
    Person's name too: sealed with the party's own key and erased by `Erase<name>`
    (`commands.model.personal`)."""
    key = ref(f"{name}Id", name)
    return Element(
        name=name,
        kind=Kind.ENTITY,
        attributes=(
            key,
            replace(NAME, personal=personal_name),
            Attr("Email", required=False, personal=True),
            replace(ADDRESSES, personal=True),
        ),
        commands=(
            CommandDecl(
                f"Register{name}",
                (key, NAME, Attr("Email", required=False)),
                f"{name}Registered",
                key=key.name,
                creates=True,
            ),
            CommandDecl(f"Rename{name}", (key, NAME), "Renamed", key=key.name),
            *more,
        ),
        events=(
            EventDecl(
                f"{name}Registered",
                (key, NAME, Attr("Email", required=False)),
                Change(set=(key.name, "Name", "Email"), status="Active", creates=True),
            ),
            EventDecl("Renamed", (key, NAME), Change(set=("Name",))),
            EventDecl(
                "AddressChanged",
                (ref("PartyId", name), NEW_ADDRESS),
                Change(append=(("Addresses", "Address"),)),
            ),
        ),
    )


# ChangeAddress names a party by id: a Person's stream or else an Organisation's.
PERSON = party(
    "Person",
    CommandDecl(
        "ChangeAddress",
        (ref("PartyId", "Person"), NEW_ADDRESS),
        "AddressChanged",
        key="PartyId",
        alternatives=("Organisation",),
        description="Add an address to a party (a Person or an Organisation).",
    ),
    personal_name=True,
)
ORGANISATION = party("Organisation", personal_name=False)

OWN_ORGANISATION = Element(
    name="OwnOrganisation",
    kind=Kind.OWN_ORGANISATION,
    attributes=(ref("OwnOrganisationId", "OwnOrganisation"), NAME),
    commands=(
        CommandDecl(
            "SetUpOwnOrganisation",
            (ref("OwnOrganisationId", "OwnOrganisation"), NAME),
            "OwnOrganisationSetUp",
            key="OwnOrganisationId",
            creates=True,
        ),
    ),
    events=(
        EventDecl(
            "OwnOrganisationSetUp",
            (ref("OwnOrganisationId", "OwnOrganisation"), NAME),
            Change(set=("OwnOrganisationId", "Name"), status="Active", creates=True),
        ),
    ),
)

WORKAREA = Element(
    name="Workarea",
    kind=Kind.WORKAREA,
    attributes=(ref("WorkareaId", "Workarea"), NAME),
    commands=(
        CommandDecl(
            "CreateWorkarea",
            (ref("WorkareaId", "Workarea"), NAME),
            "WorkareaCreated",
            key="WorkareaId",
            creates=True,
        ),
    ),
    events=(
        EventDecl(
            "WorkareaCreated",
            (ref("WorkareaId", "Workarea"), NAME),
            Change(set=("WorkareaId", "Name"), status="Active", creates=True),
        ),
    ),
)
