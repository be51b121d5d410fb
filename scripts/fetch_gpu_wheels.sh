#!/usr/bin/env bash
# Download the cp312 manylinux x86_64 wheels that the GPU machine lacks (it has torch, torchvision, numpy, PIL,
# tqdm, typer, rich, onnx(runtime), sklearn, matplotlib, httpx, anyio, opencv, prometheus-client; not these)
# into .whl/ at the repository root. scripts/gpu_job.py installs them there with
#   python3 -m pip install --no-index --no-deps --target /tmp/site .whl/*.whl
# Versions follow requirements.lock. Usage: scripts/fetch_gpu_wheels.sh [python]   (run from anywhere)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
WHEELS=(
  pydantic==2.14.4 pydantic_core==2.50.5 pydantic-settings==2.16.3 annotated-types==0.8.0
  typing-inspection==0.4.5 python-dotenv==1.2.4 typing-extensions==4.16.0
  fastapi==0.165.0 opentelemetry-api==1.45.2 starlette==1.10.0 annotated-doc==0.0.7 uvicorn==0.54.0 python-multipart==0.0.34
  ttach==0.0.3
)
# Published as source only: pure Python, so a wheel built here installs on any CPython 3.
PURE_SDISTS=(grad-cam==1.5.7)
mkdir -p .whl
grep -qxF '/.whl/' .gitignore 2>/dev/null || echo '/.whl/' >> .gitignore
for w in "${WHEELS[@]}"; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$w"
done
for w in "${PURE_SDISTS[@]}"; do
  "$PY" -m pip wheel -q --no-deps --no-build-isolation -w .whl "$w"
done
ls -1 .whl
for f in .whl/*.whl; do  # every wheel must install on CPython 3.12 x86_64
  case "$f" in *-py3-none-any.whl|*-py2.py3-none-any.whl|*-cp312-cp312-manylinux*x86_64*.whl) ;;
    *) echo "unexpected wheel tag: $f" >&2; exit 1 ;; esac
done
du -sh .whl
