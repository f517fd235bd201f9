"""The `robust` command group. Each command lives in its own module under cli/ and
only parses options into specs and calls one library function; nothing imports
the CLI. Library errors (RobustError) become one line on stderr and exit code 2; a
bad value's key path (train.lr) is shown as the command's flag (--lr, flags.py)."""

from __future__ import annotations

import importlib
import sys

import click

from ..errors import RobustError
from .flags import for_command

# command name -> module under cli/ that defines a click command called `command`
COMMANDS = {
    "train": "train",
    "eval": "eval",
    "attacks": "attacks",
    "models": "models",
    "report": "report",
    "visualize": "visualize",
    "analyze": "analyze",
    "run": "run",
    "data": "data",
    "bench": "bench",
}


class RobustGroup(click.Group):
    """Loads command modules lazily (fast --help) and turns RobustError into a
    clean one-line failure."""

    def list_commands(self, ctx):
        return [n for n in COMMANDS if self._load(n) is not None]

    def get_command(self, ctx, name):
        return self._load(name)

    @staticmethod
    def _load(name):
        mod = COMMANDS.get(name)
        if mod is None:
            return None
        try:
            module = importlib.import_module(f".{mod}", __name__)
        except ModuleNotFoundError as e:  # a command not built yet stays hidden
            if e.name and e.name.endswith(f"cli.{mod}"):
                return None
            raise
        return module.command

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RobustError as e:  # a bad value names the command's flag for its key (flags.py)
            _failed(f"error: {for_command(ctx.invoked_subcommand, e)}", 2)
        except OSError as e:  # last resort (full disk, revoked permission): commands name their outputs first
            where = f" {e.filename}" if e.filename else ""
            _failed(f"error: cannot read or write{where}: {e.strerror or e}", 2)
        except KeyboardInterrupt:
            _failed("interrupted", 130)


def _failed(message: str, code: int):
    """One line on stderr and the exit code; under torchrun this rank then leaves the
    process group without waiting for the others (distributed.cleanup)."""
    click.echo(message, err=True)
    joined = sys.modules.get(f"{__package__.rpartition('.')[0]}.distributed")  # never imported for --help
    if joined is not None:
        joined.mark_failed()
    sys.exit(code)


@click.group(cls=RobustGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="robustbench_local")
def main():
    """Train image classifiers and measure, honestly, how robust they are.

    \b
      robust train --adv pgd --eps 0.0313 --k 10
      robust eval --attack pgd --k 20 runs/<name>/best.pth
      robust report
    """
