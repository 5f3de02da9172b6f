"""Lightly's ``lightly.utils`` helper paths that training scripts import (``sslhub.utils.scheduler``)."""
