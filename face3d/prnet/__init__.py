"""PRNet training with TensorFlow/Keras (optional extra: ``pip install -e .[train]``).

Modules: ``model`` (resfcn256), ``data`` (sample lists, checks, ``tf.data`` pipeline, augmentation),
``training`` (``TrainConfig``, ``train``), ``metrics`` (68-landmark NME, pure numpy), ``reconstruction`` (dense
NME after rigid ICP, numpy and scipy) and ``uv_weights`` (loss
weights and reduced-size UV data on top of ``face3d.trainset.uv_layout``, pure numpy). Importing this package,
``metrics``, ``uv_weights`` or ``data`` does not import TensorFlow; it is imported when a model or pipeline is built.
"""
