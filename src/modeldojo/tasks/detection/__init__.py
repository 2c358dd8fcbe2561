"""Object detection: boxes around objects in images, read from YOLO, COCO or Pascal VOC layouts.

Groundwork only: `formats` (read / write the three layouts) and `box_checks` (label checks before any
compute). This package imports nothing on purpose: `modeldojo.tasks.load_all()` imports every task package,
and listing tasks must never load torch; the task registers itself once it is wired up.
"""
