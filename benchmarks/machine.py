"""What the benchmark reports say about the machine they ran on."""

import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's name for the report (`platform.processor()` is empty on most Linux systems)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
