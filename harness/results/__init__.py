"""Long-format results: rows, crash-safe storage, manifests."""
from .atomic import atomic_write_text
from .manifest import build_manifest, device_class, device_label
from .rows import COLUMNS, Measurement, error_row, make_row, samples_of, to_frame
from .store import ResultsDir

__all__ = ["COLUMNS", "Measurement", "ResultsDir", "atomic_write_text", "build_manifest",
           "device_class", "device_label", "error_row", "make_row", "samples_of", "to_frame"]
