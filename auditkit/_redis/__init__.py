"""Talking to Redis: connections, the embedded server, stream pages, XINFO, IDs and bounds.

The lowest room: it knows Redis and auditkit's errors, no other concept.
"""
