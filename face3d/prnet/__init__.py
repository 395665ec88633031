"""PRNet training with TensorFlow/Keras (optional extra: ``pip install -e .[train]``).

Modules: ``model`` (resfcn256), ``data`` (sample lists, checks, ``tf.data`` pipeline, augmentation),
``training`` (``TrainConfig``, ``train``), ``metrics`` (68-landmark NME, pure numpy) and ``uvdata`` (loss
weights and reduced-size UV data on top of ``face3d.trainset.uv_data``, pure numpy). Importing this package,
``metrics``, ``uvdata`` or ``data`` does not import TensorFlow; it is imported when a model or pipeline is built.
"""
