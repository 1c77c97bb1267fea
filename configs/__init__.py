"""The config files: each ``get_config()`` returns a ``train.config.TrainConfig`` with its numbers written out.
``ffnkv train NAME`` takes a preset name for one of them (``train.config.PRESETS``)."""
