"""The benchmark suite (``make bench``): ``bench/run.py`` runs the scenarios; the other modules are
its parts (a fast receiver, the naive baseline task). Nothing here is imported by the service."""
