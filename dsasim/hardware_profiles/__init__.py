"""Hardware profiles: strict YAML files per device, loaded once into SI-unit dataclasses.

Shipped profiles live beside this file as ``<name>.yaml``; ``list_profiles`` names them and
``load_profile`` loads one by name or by path.
"""

from __future__ import annotations

from dsasim.hardware_profiles.loader import (
    list_profiles,
    load_profile,
    profile_to_yaml_text,
    write_profile_yaml,
)
from dsasim.hardware_profiles.profile import (
    KERNEL_CLASSES,
    HardwareProfile,
    KernelEfficiency,
    Link,
    Price,
)

__all__ = [
    "KERNEL_CLASSES",
    "HardwareProfile",
    "KernelEfficiency",
    "Link",
    "Price",
    "list_profiles",
    "load_profile",
    "profile_to_yaml_text",
    "write_profile_yaml",
]
