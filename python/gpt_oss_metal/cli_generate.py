"""``gpt-oss-metal generate`` and ``gpt-oss-metal chat``: text generation from the command line.

:mod:`gpt_oss_metal.cli` parses the arguments and calls :func:`run_generate` / :func:`run_chat`
with the parsed namespace:

* both: ``model`` (path of a model.bin, or None for the small random demo model), ``limit``
  (most tokens to generate), ``temperature`` (0 = greedy), ``seed``, ``context_length``
  (0 = the model's maximum), ``prompt``;
* chat only: ``reasoning_effort`` ("low" | "medium" | "high"); ``prompt`` None means interactive.

They return the process exit status. Not implemented yet: they arrive with streaming generation.
"""

from __future__ import annotations

import argparse

__all__ = ["run_generate", "run_chat"]


def run_generate(args: argparse.Namespace) -> int:
    """Continue ``args.prompt`` with up to ``args.limit`` tokens and print them as they arrive."""
    raise NotImplementedError(
        "`gpt-oss-metal generate` is not implemented yet (it comes with streaming generation); "
        "meanwhile use gpt_oss_metal.Context from Python: append, process, sample"
    )


def run_chat(args: argparse.Namespace) -> int:
    """Chat in the harmony format: one answer to ``args.prompt``, or an interactive session."""
    raise NotImplementedError(
        "`gpt-oss-metal chat` is not implemented yet (it comes with streaming generation); "
        "meanwhile use gpt_oss_metal.harmony with gpt_oss_metal.Context from Python"
    )
