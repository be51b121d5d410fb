"""Browser tests reuse the real-server helpers of tests/ui."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ui"))
