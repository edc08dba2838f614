"""The one exception type users see.

Anything that is the user's input being wrong (a path, an option, a model id, a server that does not
answer) raises :class:`LeafHubError` with a message that names the input and says how to fix it. The CLI
prints it as one line and exits with status 2 instead of showing a traceback.
"""

from __future__ import annotations


class LeafHubError(Exception):
    """A problem with the user's input or environment, explained in one line."""
