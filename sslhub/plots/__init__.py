"""Pictures for people: training curves and augmentation previews, drawn with Pillow (no plotting dependency)."""

from sslhub.plots.curves import write_curves
from sslhub.plots.preview import preview

__all__ = ["preview", "write_curves"]
