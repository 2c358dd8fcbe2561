"""Object detection: boxes around objects in images, read from YOLO, COCO or Pascal VOC layouts (task.py).

Importing this package registers the task and loads no torch (`modeldojo.tasks.load_all()` imports every task
package, and listing tasks must stay light): torch-using modules are imported inside the methods that need them.
"""
from . import task  # noqa: F401
