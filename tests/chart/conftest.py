import sys
from pathlib import Path

# tools/helm.py
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
