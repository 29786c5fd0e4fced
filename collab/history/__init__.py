"""History: versions, text at any time, diffs, attribution, exports and restores.

The submodules are imported where they are used, not when a server starts: a
server that nobody asks about history never loads them (docs/performance.md,
"Memory"). What the command line needs to build its parser lives here.
"""

from typing import Final

#: What ``export`` writes: plain text, Markdown with front matter, or JSON.
FORMATS: Final = ("txt", "md", "json")
