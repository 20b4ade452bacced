"""The package version, in a module of its own so that core modules can read it without importing the
package root (which lazily re-exports the public API)."""

__version__ = "0.1.0"
