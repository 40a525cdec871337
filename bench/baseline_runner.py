"""One happy release of the baseline tree's own design, measured inside that tree (run by `bench.runs`).

    python -I -B bench/baseline_runner.py TREE WORK MINUTE_SECONDS OUT_JSON

Started by `bench.runs.baseline_release` in a fresh interpreter whose path holds the baseline tree
only: `local` and `podrelease` are that tree's (its local runtime, its built functions, its ASL), while
the measurement is ours: this file registers our `bench` package by its path under the name `bench`
(the tree's own `bench` folder is never imported), so the release is pushed, approved and recorded by
the same `bench.runs.release_run` that measures the tree's design, and no metric code is copied.
Writes the run as JSON to OUT_JSON (timestamps as ISO 8601 text; `bench.metrics` reads either form).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

OURS = Path(__file__).resolve().parent


def _use_tree(tree: Path) -> None:
    """The tree's `local` (its root) and `podrelease` (its layer) first; our `bench` package by path."""
    sys.path[:0] = [str(tree / "layers" / "common"), str(tree)]
    spec = importlib.util.spec_from_file_location("bench", OURS / "__init__.py", submodule_search_locations=[str(OURS)])
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {OURS} as the bench package")
    package = importlib.util.module_from_spec(spec)
    sys.modules["bench"] = package
    spec.loader.exec_module(package)


def _check_sources(tree: Path) -> None:
    """Nothing of the project may come from anywhere but the tree (and `bench` from us): a clash would
    measure today's code under the baseline's name."""
    import local.runtime  # noqa: PLC0415 - only once the path is set
    import podrelease  # noqa: PLC0415

    for name, module in (("local", local.runtime), ("podrelease", podrelease)):
        if not Path(str(module.__file__)).resolve().is_relative_to(tree.resolve()):
            raise ImportError(f"{name} came from {module.__file__}, not from the baseline tree {tree}")
    bench_runs = sys.modules["bench.runs"]
    if not Path(str(bench_runs.__file__)).resolve().is_relative_to(OURS):
        raise ImportError(f"bench.runs came from {bench_runs.__file__}, not from {OURS}")


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def main() -> int:
    tree, work, minute, out = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4])
    _use_tree(tree)
    from bench import runs  # noqa: PLC0415 - our runs module, on the tree's local runtime

    _check_sources(tree)
    try:
        result: dict[str, Any] = {"run": dataclasses.asdict(runs.release_run(work, minute, "before"))}
    except Exception as exc:  # told to the parent in the file: it records the failure beside the figures
        result = {"errors": f"{type(exc).__name__}: {exc}"}
    out.write_text(json.dumps(result, default=_json))
    return 0 if "run" in result else 1


if __name__ == "__main__":
    sys.exit(main())
