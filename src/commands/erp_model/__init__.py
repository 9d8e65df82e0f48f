"""The ERP, declared: the seed's elements, their commands and events, and the rules that need code.

Person and Organisation are Entities (parties, with addresses); Customer is a
Role a party plays for the account's Own Organisation in a Workarea, with a
spending limit; Order is an Agreement; Delivery and Invoice are Business
Activities. A customer's open amount is what its orders placed and not yet
paid or cancelled add up to; PlaceOrder may not take it over the limit.
"""

from commands.erp_model.customer import CUSTOMER
from commands.erp_model.fulfilment import DELIVERY, INVOICE
from commands.erp_model.order import ORDER
from commands.erp_model.parties import ORGANISATION, OWN_ORGANISATION, PERSON, WORKAREA
from commands.erp_model.read_models import CHAINED, READ_MODELS
from commands.model import Model
from commands.model.read_models import check_read_models

ERP = Model((PERSON, ORGANISATION, OWN_ORGANISATION, WORKAREA, CUSTOMER, ORDER, DELIVERY, INVOICE))
"""The ERP model."""
UPCASTERS = ERP.upcasters
"""How events stored in an older shape read today: declared beside each element's events
(`EventDecl.history`, `Element.retired`; `commands.model.versions`). No ERP event has changed
shape yet."""
check_read_models(ERP.elements, READ_MODELS, CHAINED)  # a bad declaration stops the process here, at start-up

__all__ = ["CHAINED", "ERP", "READ_MODELS", "UPCASTERS"]
