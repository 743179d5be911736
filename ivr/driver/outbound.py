"""The dialler: campaigns' calls out, with the same agents as inbound and inbound first.

A worker thread (the "hopper filler", :mod:`ivr.driver.service`) owns the contact book: it
posts :class:`~ivr.driver.messages.HopperFill` with each open campaign's due contacts and
:class:`~ivr.driver.messages.DncAdded` when numbers join the do-not-call list, and takes the
core's :class:`~ivr.driver.messages.OutboundWrite` effects (attempts with their decision,
answers, dispositions, numbers for the list). The loop never waits on the store.

On each :class:`~ivr.driver.messages.Tick` every campaign in its window and not paused asks
the pacer (:class:`ivr.outbound.plan.Pacer`) how many contacts to dial, takes them from its
hopper and dials them, after checking a ``dial_out`` rule allows the number and it is not on
the do-not-call list; every decision, dialled or not, goes to the worker as an attempt.
"""

import logging
from typing import Any

from ivr.driver.base import CoreBase
from ivr.driver.console import fill_script

log = logging.getLogger("ivr.driver")


class Outbound(CoreBase):
    """Campaigns' calls; see the module doc."""

    # -- the console's view --------------------------------------------------------------------
    def _campaigns_view(self, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {}
        calls = list(self.outbound.calls.values())
        for name, st in self.outbound.campaigns.items():
            mine = [c for c in calls if c.campaign == name]
            out[name] = {
                "mode": st.campaign.mode, "window_open": st.window_open,
                "paused_reason": st.paused_reason,
                "dialling": sum(1 for c in mine if c.answered_at is None),
                "connected": sum(1 for c in mine if c.answered_at is not None),
                "attempts_today": st.attempts_today, "connects_today": st.connects_today,
                "abandoned_today": st.abandoned_today, "hopper": len(st.hopper)}
        return out

    def _preview_view(self, agent: str) -> dict[str, Any] | None:
        offer = self.outbound.previews.get(agent)
        if offer is None:
            return None
        name, contact = offer
        st = self.outbound.campaigns.get(name)
        script = st.campaign.script if st is not None else ""
        values = {**contact.vars, "name": contact.name, "number": contact.number,
                  "agent": agent, "campaign": name}
        return {"campaign": name, "contact_id": contact.id, "number": contact.number,
                "name": contact.name, "vars": dict(contact.vars),
                "script": fill_script(script, values) if script else ""}


__all__ = ["Outbound"]
