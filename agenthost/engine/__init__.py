"""The engine (layer 3): runs sessions' turns under a lease, from the event log."""
