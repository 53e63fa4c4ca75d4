"""`clsrun bench` (placeholder: being implemented)."""

from __future__ import annotations
