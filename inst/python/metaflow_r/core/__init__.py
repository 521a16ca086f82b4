"""What every layer uses: the flow's spec, its rules and graph, parameters, errors, settings, and the
protocol between R and Python. Imports nothing else of the backend."""
from pathlib import Path

# Read by Python and by R alike (R finds them in its installed copy of inst/python).
DATA_DIR = Path(__file__).resolve().parent.parent / "data"
