"""Shared pytest configuration: the repository root on sys.path (tests run without installing too)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
