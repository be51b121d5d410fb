"""`evbattery ui` (the Streamlit app) and `evbattery demo` (what `make run` does: data, models, reports, servers)."""

from __future__ import annotations

import os
import subprocess
import time

import typer

from evbattery.cli.app import app
from evbattery.core.console import fail, info


@app.command("ui")
def ui_cmd(port: int = typer.Option(8501, help="Port of the UI (bound to 127.0.0.1)."),
           api_url: str = typer.Option(None, "--api-url", help="API the UI calls (default EVBATTERY_API_URL).")) -> None:
    """Serve the Streamlit UI on 127.0.0.1 (it calls the API over HTTP)."""
    from evbattery.core.config import get_settings
    from evbattery.experiments.servers import port_free, ui_command

    if not port_free(port):
        fail(f"port {port} is already in use; pass --port to pick another")
    url = api_url or get_settings().api_url
    info(f"UI on http://127.0.0.1:{port}  (API: {url}); Ctrl-C to stop")
    try:
        raise typer.Exit(subprocess.call(ui_command(port), env={**os.environ, "EVBATTERY_API_URL": url}))
    except KeyboardInterrupt:
        info("stopped")


@app.command("demo")
def demo_cmd(api_port: int = typer.Option(8000, help="API port (127.0.0.1)."),
             ui_port: int = typer.Option(8501, help="UI port (127.0.0.1)."),
             serve: bool = typer.Option(True, "--serve/--no-serve", help="Start the API and UI at the end.")) -> None:
    """The one-command demo (`make run`): build what is missing, then serve the API and the UI."""
    from evbattery.core.config import get_settings
    from evbattery.experiments.servers import api_command, port_free, start, stop, ui_command, wait_until_up

    s = get_settings()
    from evbattery.experiments.demo import demo_steps

    steps = demo_steps(s.data_dir, s.model_dir, s.reports_dir)
    todo = [st for st in steps if not st.done()]
    est = sum(st.estimate_s for st in todo)
    info(f"[bold]evbattery demo[/]: {len(todo)} of {len(steps)} steps to build, about {est / 60:.0f} min on a "
         f"2-core CPU" + (" (everything is built; starting the servers)" if not todo else ""))
    t0 = time.monotonic()
    for i, step in enumerate(steps, 1):
        if step.done():
            info(f"[green]✓[/] {i}/{len(steps)} {step.title} (already built, skipped)")
            continue
        info(f"[bold cyan]▶[/] {i}/{len(steps)} {step.title} (≈{step.estimate_s / 60:.1f} min)")
        t = time.monotonic()
        try:
            step.run()
        except RuntimeError as e:
            fail(str(e))
        info(f"[green]✓[/] {i}/{len(steps)} {step.title} in {time.monotonic() - t:.0f} s")
    info(f"built in {(time.monotonic() - t0) / 60:.1f} min")
    if not serve:
        return
    for port in (api_port, ui_port):
        if not port_free(port):
            fail(f"port {port} is already in use (another demo?); stop it or pass --api-port/--ui-port")
    api_url = f"http://127.0.0.1:{api_port}"
    api = ui = None
    try:
        api = start(api_command(api_port))
        wait_until_up(f"{api_url}/health", api)
        ui = start(ui_command(ui_port), {"EVBATTERY_API_URL": api_url})
        wait_until_up(f"http://127.0.0.1:{ui_port}/_stcore/health", ui)
        info(f"\n[bold green]Ready.[/]  UI: http://127.0.0.1:{ui_port}   API: {api_url}/docs   "
             f"(total {(time.monotonic() - t0) / 60:.1f} min). Ctrl-C stops both.")
        while api.poll() is None and ui.poll() is None:
            time.sleep(0.5)
        fail(f"the {'API' if api.poll() is not None else 'UI'} server exited unexpectedly; see its log above")
    except RuntimeError as e:
        fail(str(e))
    except KeyboardInterrupt:
        info("stopping the API and the UI...")
    finally:
        stop(ui, api)
