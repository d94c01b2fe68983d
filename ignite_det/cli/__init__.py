"""The ``ignite-det`` command line: evaluate COCO files from any framework."""
