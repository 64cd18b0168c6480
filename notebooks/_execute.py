"""Execute the notebooks with nbclient, on a given build, writing their figures to a given folder.

Used by ``python -m notebooks`` (regenerates the committed PNGs in ``notebooks/figures``) and by
``tests/test_notebooks.py`` (a fresh build and a temporary folder). The kernel is always this
interpreter: a kernel spec naming ``sys.executable`` is written under a private prefix, so a
``python3`` kernel spec installed elsewhere on the machine is never picked by mistake.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
KERNEL = "yeast-pipeline-notebooks"
#: What :func:`notebooks._plots.save` prints for each PNG it writes.
_SAVED = re.compile(r"^saved (\S+\.png)$", re.M)


def notebooks() -> list[Path]:
    """The numbered notebooks, in order."""
    return sorted(HERE.glob("[0-9][0-9]_*.ipynb"))


def needs_build(notebook: Path) -> bool:
    """Whether a notebook reads a build (the benchmark notebook reads only ``bench-results``)."""
    return "benchmarks" not in notebook.stem


def install_kernel(prefix: Path) -> Path:
    """Write a kernel spec for this interpreter under ``prefix``; returns its kernels folder."""
    from ipykernel.kernelspec import install

    install(prefix=str(prefix), kernel_name=KERNEL, display_name="Python (yeast pipeline)")
    return prefix / "share" / "jupyter" / "kernels"


@dataclass(frozen=True)
class Executed:
    """One executed notebook: the notebook with its outputs, and the PNGs it reported saving."""

    notebook: nbformat.NotebookNode
    figures: list[str]

    def text(self) -> str:
        """What the notebook printed (every stream output of every cell, concatenated)."""
        return printed(self.notebook)


def printed(nb: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []) if o.get("output_type") == "stream")


def execute(path: Path, *, build: Path, figures: Path, bench: Path, kernels: Path, timeout: int = 300) -> Executed:
    """Run every cell of ``path`` in a fresh kernel (working directory: the notebook's folder) with
    ``PIPELINE_BUILD``, ``NOTEBOOK_FIGURES`` and ``PIPELINE_BENCH_RESULTS`` set and matplotlib on Agg.

    A failing cell raises ``nbclient.exceptions.CellExecutionError`` (its traceback in the message).
    The notebook file itself is not modified.
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env = {**os.environ, "PIPELINE_BUILD": str(Path(build).resolve()),
           "NOTEBOOK_FIGURES": str(Path(figures).resolve()), "PIPELINE_BENCH_RESULTS": str(Path(bench).resolve()),
           "MPLBACKEND": "Agg",
           "PYDEVD_DISABLE_FILE_VALIDATION": "1"}  # the kernel's debugger: no "frozen modules" warning per start
    km = KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernels)]))
    # the kernel's own log at ERROR: ipykernel warns on every start that its loopback TCP is unencrypted
    client = NotebookClient(nb, km=km, timeout=timeout, startup_timeout=120, shutdown_kernel="immediate",
                            extra_arguments=["--IPKernelApp.log_level=ERROR"],
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute(env=env, cleanup_kc=True)  # cleanup_kc: shut the kernel down (nbclient keeps a km it was given)
    return Executed(nb, _SAVED.findall(printed(nb)))


def kernel_python(kernels: Path) -> str:
    """The interpreter the installed kernel spec runs (for messages and tests)."""
    import json

    return json.loads((kernels / KERNEL / "kernel.json").read_text())["argv"][0]


def main(argv: list[str] | None = None) -> int:
    """``python -m notebooks [NAME ...]``: execute the notebooks, rewrite their PNGs; exit 1 if one fails."""
    import argparse
    import tempfile

    from nbclient.exceptions import CellExecutionError, DeadKernelError

    repo = HERE.parent
    p = argparse.ArgumentParser(prog="python -m notebooks", description=main.__doc__)
    p.add_argument("names", nargs="*", help="notebooks to run (file names or their number, e.g. 02); default: all")
    p.add_argument("--build", type=Path, default=repo / "data/processed/string12",
                   help="the build folder the notebooks read (default: data/processed/string12, from `make demo`)")
    p.add_argument("--figures", type=Path, default=HERE / "figures", help="where the PNGs go (default: %(default)s)")
    p.add_argument("--bench-results", type=Path, default=repo / "bench-results",
                   help="the benchmark JSON records (default: %(default)s)")
    p.add_argument("--timeout", type=int, default=600, help="seconds per cell (default: %(default)s)")
    args = p.parse_args(argv)

    chosen = [nb for nb in notebooks() if not args.names
              or any(nb.name == n or nb.stem == n or nb.name.startswith(f"{n}_") for n in args.names)]
    if not chosen:
        print(f"error: no notebook matches {args.names}; have {[nb.name for nb in notebooks()]}", file=sys.stderr)
        return 2
    if any(needs_build(nb) for nb in chosen) and not (args.build / "graph.zarr").is_dir():
        print(f"error: {args.build}: no build here (no graph.zarr); run `make demo` or pass --build",
              file=sys.stderr)
        return 2
    args.figures.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    with tempfile.TemporaryDirectory(prefix="nb-kernel-") as tmp:
        kernels = install_kernel(Path(tmp))
        for nb in chosen:
            try:
                run = execute(nb, build=args.build, figures=args.figures, bench=args.bench_results, kernels=kernels,
                              timeout=args.timeout)
            except (CellExecutionError, DeadKernelError) as e:
                print(f"error: {nb.name}: {type(e).__name__}:\n{e}", file=sys.stderr)
                return 1
            written += run.figures
            print(f"{nb.name}: {len(run.figures)} figure(s): {', '.join(run.figures) or '-'}")
    if not args.names:  # every notebook ran: a PNG none of them wrote is left over from an older version
        for stale in sorted(set(p.name for p in args.figures.glob("*.png")) - set(written)):
            (args.figures / stale).unlink()
            print(f"removed {stale} (no notebook writes it any more)")
    print(f"figures in {args.figures}")
    return 0
