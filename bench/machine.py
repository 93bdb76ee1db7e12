"""The machine a benchmark ran on: cores, memory, CPU, load, and the versions that matter."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("apache-airflow-core", "great-expectations", "duckdb", "sqlglot", "pydantic", "pyyaml",
            "google-cloud-storage", "sqlalchemy")


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def _meminfo_gib(key: str) -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def describe() -> dict[str, object]:
    import yaml

    return {
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gib": _meminfo_gib("MemTotal"),
        "memory_available_gib": _meminfo_gib("MemAvailable"),
        "cpu": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libyaml": bool(getattr(yaml, "__with_libyaml__", False)),
        "versions": {p: _version(p) for p in PACKAGES},
        "load_average": load_average(),
    }


def summary(info: dict[str, object]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())  # type: ignore[union-attr]
    load = " ".join(f"{x:.2f}" for x in info["load_average"])  # type: ignore[union-attr]
    return (f"{info['nproc']} cores ({info['cpu']}), {info['memory_gib']} GiB RAM "
            f"({info['memory_available_gib']} available), Python {info['python']}, libyaml {info['libyaml']}; "
            f"load average {load}\n{versions}")
