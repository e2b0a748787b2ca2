"""`python -m engine`: the same as the `volley` command.

`python -m` puts the working directory first on sys.path.  Once `engine` itself has been
found somewhere else, nothing more may come from there: systemd's working directory
/var/lib/volley holds the spool *data* directory `spool/`, which would shadow the `spool`
package (see engine.runtime.spawn).  When `engine` was found in the working directory (a
checkout run without installing), that directory is where the code is, and it stays.
"""

import os
import sys

_code_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if (
    sys.path
    and not sys.flags.safe_path
    and os.path.abspath(sys.path[0] or os.curdir) == os.getcwd() != _code_root
):
    del sys.path[0]

from engine.cli import main  # noqa: E402  (after the sys.path fix above, on purpose)

sys.exit(main())
