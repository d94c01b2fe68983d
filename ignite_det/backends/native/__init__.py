"""The native engine: COCOeval's matching per chunk of images in ``update()``, its accumulate in ``compute()``."""
