from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from lipika.payments.service import Payments
from lipika.inbox.service import Inbox


async def get_payments(request: Request) -> Payments:
    return request.state.payments


async def get_inbox(request: Request) -> Inbox:
    return request.state.inbox


PaymentsDep = Annotated[Payments, Depends(get_payments)]
InboxDep = Annotated[Inbox, Depends(get_inbox)]
