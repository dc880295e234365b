"""Command-line tools: ``chatproto-serve`` (and ``chatproto-chat``).

These do I/O and are never imported by the core.
"""
