"""``maestro mcp``: the session manager served to agents over the Model Context Protocol.

A face like the command line: thin over :class:`maestro.SessionManager`, it
holds no rule of its own.  :mod:`maestro.mcp.server` builds the server (tools,
resources, updates from the change feed); :mod:`maestro.mcp.models` holds the
typed results the tools return, whose JSON Schemas agents read.  Nothing here
is imported by ``import maestro``: it needs the optional ``mcp`` extra.
"""
