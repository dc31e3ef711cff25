"""Completion callbacks: where they may go (`urls`) and the deliverer that sends them (`deliverer`).

The outbox itself is SQL, in `service.stores.outbox`; the README's "Completion callbacks"
section is the contract a receiver codes against.
"""

from service.callbacks.deliverer import Deliverer
from service.callbacks.urls import check_callback_url

__all__ = ["Deliverer", "check_callback_url"]
