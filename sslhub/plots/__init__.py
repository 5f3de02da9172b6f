"""Pictures for people: training curves (matplotlib) and augmentation previews (Pillow)."""

from sslhub.plots.curves import write_curves
from sslhub.plots.preview import preview

__all__ = ["preview", "write_curves"]
