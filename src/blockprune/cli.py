"""The `blockprune` command: a thin layer over the Python API (subcommands live in `commands/`).

Every user error is one line on stderr and exit status 2, with nothing half-written."""
from __future__ import annotations

import argparse
import sys

from .errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit status 2, like every other input error
        self.exit(2, f"blockprune: error: {message} (see `{self.prog} --help`)\n")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """"(default: X)" after every option's help, except where the default is None: those options say in
    their help what leaving them out means ("(default: None)" would tell nothing)."""

    def __init__(self, prog: str):
        super().__init__(prog, max_help_position=32)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)

    def _split_lines(self, text: str, width: int) -> list[str]:
        """Wrap at spaces only, never inside a word, an option name (--max-windows) or a task name
        (arc_challenge); a comma list longer than the line (a default of --tasks) breaks after a comma."""
        import textwrap

        text = self._whitespace_matcher.sub(" ", text).strip()
        lines = []
        for line in textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False):
            while len(line) > width and "," in line[:width]:
                cut = line.rindex(",", 0, width) + 1
                lines.append(line[:cut])
                line = line[cut:]
            lines.append(line)
        return lines


def build_parser(argv: list[str] | None = None) -> tuple[argparse.ArgumentParser, dict]:
    """The parser and each subcommand's `run`. Given the command line, only the subcommand it names gets
    its arguments, replayed from a cache where possible (commands/recorded.py): help and argument errors
    then import neither torch nor transformers. Without one, every subcommand is built in full."""
    from .commands import load_all, recorded

    named = _command(argv) if argv is not None else None
    parser = _Parser(prog="blockprune", description="Training-free structured pruning of causal LMs.",
                     formatter_class=_Formatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    runners = {}
    for mod in load_all():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.DESCRIPTION, formatter_class=_Formatter)
        if argv is None:
            mod.add_arguments(p)
        elif mod.NAME == named:
            recorded.add(mod, p)
        runners[mod.NAME] = mod.run
    return parser, runners


def _command(argv: list[str]) -> str | None:
    """The subcommand a command line names: its first word that is not an option (the top-level parser
    has no option that takes a value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, runners = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed as one line
        return int(e.code or 0)
    try:
        return runners[args.command](args) or 0
    except UserError as e:
        print(f"blockprune: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("blockprune: interrupted; continue with --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
