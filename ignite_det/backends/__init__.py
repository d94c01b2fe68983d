"""The evaluation backends: the native engine and COCOeval (pycocotools or faster-coco-eval)."""
