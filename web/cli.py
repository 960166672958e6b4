"""``lmk web [MODEL...] [--port N]`` serves the page; ``--export DIR`` writes it to a folder."""

from __future__ import annotations

from pathlib import Path

import click

from lmk.core.errors import LmkError


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("models", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="0: any free port",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="the address to listen on (0.0.0.0: every interface; a browser on another machine "
    "gets plain http, not a secure context: one WASM thread, no WebGPU)",
)
@click.option(
    "--export",
    "export_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="write the page, the ORT files and the models into DIR instead of serving",
)
@click.option(
    "--detector",
    type=click.Path(path_type=Path),
    default=None,
    help="an lmk BlazeFace detector file for the page (default: the cached one of "
    "`lmk models fetch blazeface`, if any; 'none': the page's frame detector only)",
)
@click.option("--overwrite", is_flag=True, help="with --export: write into a folder that has files")
def web_command(
    models: tuple[Path, ...],
    port: int,
    host: str,
    export_dir: Path | None,
    detector: Path | None,
    overwrite: bool,
) -> None:
    """Run lmk models in the browser: onnxruntime-web (WASM with SIMD and threads, WebGPU
    when the browser offers it) on a camera, a video file or photos.

    MODELS are lmk .onnx files (default: the bundled ones). With a detector file the page
    detects faces with BlazeFace, then follows them, as lmk-run does. The server sends the
    cross-origin isolation headers the WASM EP's threads need; Ctrl-C stops it."""
    from lmk.web.assets import (
        check_detector,
        check_models,
        default_detector,
        default_models,
        models_index,
        site_files,
    )

    chosen = check_models(list(models) or default_models())
    detector_path = default_detector() if detector is None else detector
    if detector_path is not None and str(detector_path) != "none":
        chosen.append(check_detector(detector_path, chosen))
    if export_dir is not None:
        from lmk.web.export import export_site

        written = export_site(export_dir, chosen, overwrite)
        click.echo(
            f"wrote {len(written)} files to {export_dir}/ ({len(chosen)} models); serve it with the "
            "headers in its _headers file (COOP/COEP) for WASM threads"
        )
        return
    if overwrite:
        raise LmkError("--overwrite goes with --export DIR")
    from lmk.web.server import open_server

    files = site_files(chosen)
    server = open_server(files, {"models/index.json": models_index(chosen)}, host, port)
    bound = server.server_address[1]
    shown = "localhost" if host in ("127.0.0.1", "localhost") else host
    named = ", ".join(m.name if m.kind == "landmarks" else f"{m.name} ({m.kind})" for m in chosen)
    click.echo(f"serving {len(chosen)} models ({named})")
    click.echo(f"open http://{shown}:{bound}/ (Ctrl-C stops)", err=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # the way a server is stopped, not a failure
        click.echo("stopped")
    finally:
        server.server_close()
