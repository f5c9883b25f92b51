"""Processes podlab starts and ends: ``lifecycle`` (PID + start time; end only what we started, all at once),
``spawn`` (posix_spawn inside a network namespace) and ``daemon`` (double-forked daemons that report their PID).
No module here knows what a lab is; the lab record (``state.record``) keeps the PIDs.
"""
