"""The UI speaks HTTP: importing the app and its helpers loads neither torch nor the model code (checked in a
fresh interpreter, since this test process has torch loaded already)."""

from __future__ import annotations

import subprocess
import sys


def test_ui_imports_no_torch():
    code = ("import sys, evbattery.ui.app, evbattery.ui.client, evbattery.ui.results, evbattery.ui.bias_summary; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'timm') or "
            "m.startswith(('evbattery.training', 'evbattery.inference', 'evbattery.models'))]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
