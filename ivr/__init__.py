"""Centralino: IVR flows, call engine, SIP adapter and the driver that wires them."""

__version__ = "0.1.0"
