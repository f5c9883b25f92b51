"""podlab: an emulator of the Kubernetes pod network built from real Linux network namespaces.

``from emulator import Lab`` is the entry point of the Python API (the handle is ``emulator.lab.api.Lab``); it
installs podlab's parts first (``emulator.plugins.install``), as the CLI does.
"""
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "Lab":
        from emulator import plugins
        from emulator.lab.api import Lab
        plugins.install()
        return Lab
    raise AttributeError(name)


__all__ = ["Lab", "__version__"]
