"""podlab: an emulator of the Kubernetes pod network built from real Linux network namespaces.

``from emulator import Lab`` is the entry point of the Python API (see ``emulator.lab.api``).
"""
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Lab":
        from emulator.lab.api import Lab
        return Lab
    raise AttributeError(name)


__all__ = ["Lab", "__version__"]
