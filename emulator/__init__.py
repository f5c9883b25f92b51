"""podlab: an emulator of the Kubernetes pod network built from real Linux network namespaces."""
__version__ = "0.1.0"
