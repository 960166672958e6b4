"""``lmk web --export DIR``: the site as a folder any static host can serve.

The same tree ``lmk web`` serves (page, ``ort/``, ``models/``), each file written through
:mod:`lmk.core.fileio` (temporary name, then rename; a failed run takes back what it added), plus
a ``_headers`` file that sets the cross-origin isolation headers on hosts that read one
(Netlify, Cloudflare Pages). On a host that cannot send them the page still runs, on one
WASM thread, and says so.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from lmk.core.fileio import atomic_output, filled_folder, plan_output
from lmk.web.assets import SiteModel, models_index, site_files
from lmk.web.server import ISOLATION_HEADERS

HEADERS_FILE = "_headers"


def headers_file() -> bytes:
    """Netlify / Cloudflare Pages ``_headers``: the isolation headers on every path."""
    lines = ["/*"] + [f"  {key}: {value}" for key, value in ISOLATION_HEADERS.items()]
    return ("\n".join(lines) + "\n").encode("utf-8")


def export_site(out: Path, models: list[SiteModel], overwrite: bool = False) -> list[str]:
    """Write the site into ``out``; returns the site paths written. The models are inputs:
    an output that is one of them is refused, never overwritten."""
    files = site_files(models)
    generated = {"models/index.json": models_index(models), HEADERS_FILE: headers_file()}
    inputs = [m.path for m in models]
    with filled_folder(out, overwrite) as run:
        for folder in sorted({Path(name).parent for name in [*files, *generated]} - {Path(".")}):
            run.mkdir(out / folder)
        # Every target is checked before the first is written: a refusal changes nothing.
        targets = {name: plan_output(out / name, True, inputs) for name in [*files, *generated]}
        for name, source in files.items():
            run.add(out / name)
            with atomic_output(targets[name]) as tmp:
                shutil.copyfile(source, tmp)
        for name, data in generated.items():
            run.add(out / name)
            with atomic_output(targets[name]) as tmp:
                tmp.write_bytes(data)
    return sorted([*files, *generated])
