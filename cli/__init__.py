"""The ``ffnkv`` command line: argparse → settings → study → report. One module per subcommand."""
from cli.main import main

__all__ = ["main"]
