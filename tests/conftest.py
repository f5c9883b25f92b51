"""The suite enters podlab as a program does: its parts are installed once (``emulator.plugins``)."""
from emulator import plugins

plugins.install()
