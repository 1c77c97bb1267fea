"""``python -m cli`` is the ``ffnkv`` command."""
import sys

from cli.main import main

sys.exit(main())
