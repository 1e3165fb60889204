# SPDX-License-Identifier: GPL-2.0-only
"""Examples of Morpheus in Python services (run them from ``morpheus-py/``)."""
