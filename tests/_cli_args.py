"""The `dataaudit run` command line for the demo inputs, shared by the CLI tests."""

from __future__ import annotations


def run_argv(demo_files: dict[str, str], out, *extra: str) -> list[str]:
    """argv for `dataaudit run` on the demo files (the `demo_files` fixture) writing to `out`."""
    return [
        "run",
        "--table",
        demo_files["table"],
        "--probs",
        demo_files["probs"],
        "--embeddings",
        demo_files["embeddings"],
        "--out",
        str(out),
        *extra,
    ]
