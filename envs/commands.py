"""Commands the program prints for the user to run next, spelled so that they run as printed.

After ``make setup`` the ``phemex-rl`` script lives in ``.venv/bin``, which is on the PATH
only in an activated shell. A printed hint says ``phemex-rl ...`` when that is what the
shell would find, and the script's path (``.venv/bin/phemex-rl ...``) otherwise.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

SCRIPT = "phemex-rl"


def phemex_rl(*args: str) -> str:
    """The command line ``phemex-rl <args>`` as it runs from the working directory.

    Example: ``phemex_rl("evaluate", "run_dir=outputs/demo/x")`` is
    ``".venv/bin/phemex-rl evaluate run_dir=outputs/demo/x"`` outside an activated venv.
    """
    return " ".join([_program(), *(shlex.quote(str(a)) for a in args)])


def _program() -> str:
    # sys.executable is the venv's python (not resolved: resolving would leave the venv)
    script = Path(sys.executable).parent / SCRIPT
    found = shutil.which(SCRIPT)
    if script.exists():
        if found is not None and os.path.samefile(found, script):
            return SCRIPT
        return shlex.quote(_as_typed(script))
    # not installed as a script (a bare checkout on PYTHONPATH): the module does the same
    return f"{shlex.quote(_as_typed(Path(sys.executable)))} -m serving.cli"


def _as_typed(path: Path) -> str:
    """``path`` relative to the working directory when inside it, else absolute."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)
