"""Routing: queues, agents and the choice of who rings next. Pure: time is an argument."""

from routing.acd import AGENT_STATES, AgentState, Caller, QueueSpec, RingAgent, Router, StopRinging

__all__ = ["AGENT_STATES", "AgentState", "Caller", "QueueSpec", "RingAgent", "Router",
           "StopRinging"]
