"""pivotgym's bundled tool-API domains; each module builds and registers one ``DOMAIN``."""
