"""``python -m gemseg`` = the ``gem`` command (for environments where the console script is not on PATH)."""
import sys

from gemseg.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
