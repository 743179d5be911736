"""Hardware: SIP/FXO gateways (trunks) and serial devices. Knows nothing of flows or queues."""
