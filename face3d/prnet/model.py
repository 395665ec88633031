"""PRNet's ``resfcn256`` encoder-decoder in Keras 3 (Feng et al., "Joint 3D Face Reconstruction and Dense
Alignment with Position Map Regression Network", ECCV 2018; layout of the authors' ``predictor.py``).

Layer names are part of the interface: checkpoints and the exporter address layers by name (``build_resfcn256``
lists them). The output is PRNet's normalised position map in [0, 1]: crop-space x, y, z divided by 1.1 x the map
resolution.
"""
import keras
from keras import layers

from face3d.contract import INPUT_SIZE, check_input_size

__all__ = ["build_resfcn256", "ENCODER_WIDTHS", "DECODER_WIDTHS"]

# Channels of the 10 residual blocks and the 17 transposed convolutions, in units of the base width
# (the paper's width 16 gives 32 .. 512 in the encoder); decoder strides follow.
ENCODER_WIDTHS = (2, 2, 4, 4, 8, 8, 16, 16, 32, 32)
ENCODER_STRIDES = (2, 1, 2, 1, 2, 1, 2, 1, 2, 1)
DECODER_WIDTHS = (32, 16, 16, 16, 8, 8, 8, 4, 4, 4, 2, 2, 1, 1, None, None, None)  # None: 3 output channels
DECODER_STRIDES = (1, 2, 1, 1, 2, 1, 1, 2, 1, 1, 2, 1, 2, 1, 1, 1, 1)


def build_resfcn256(input_size=INPUT_SIZE, width=16, bn_momentum=0.99, name="resfcn256"):
    """Build PRNet's resfcn256.

    Layers, by name:

    * ``input`` -> ``conv0`` (4x4, width channels) -> ``conv0_bn`` -> ``conv0_relu``;
    * residual blocks ``block1`` .. ``block10`` with layers ``blockN_conv1`` (1x1, c/2) -> ``blockN_bn1`` ->
      ``blockN_relu1`` -> ``blockN_conv2`` (4x4, c/2, the block's stride) -> ``blockN_bn2`` -> ``blockN_relu2`` ->
      ``blockN_conv3`` (1x1, c) and ``blockN_shortcut`` (1x1 projection, only where the shape changes; at stride 2
      it follows ``blockN_subsample``, which keeps every second pixel, so together they are the original strided
      1x1 convolution with the same weights) -> ``blockN_add`` -> ``blockN_bn`` -> ``blockN_relu``;
    * transposed convolutions ``deconv1`` .. ``deconv17`` (4x4), each followed by ``deconvN_bn`` and
      ``deconvN_relu``, except ``deconv17`` whose ``deconv17_bn`` feeds the sigmoid ``output``.

    As in the original (``tf.contrib.layers`` with ``biases_initializer=None``) no convolution has a bias; batch
    normalisation has scale and offset.

    Args:
        input_size: side of the square input image and output map, in pixels; a multiple of 32 (five stride-2
            stages); 256 reproduces the paper.
        width: base channel count (16 = the paper: 13,365,508 parameters, 13,353,618 trainable).
        bn_momentum: moving-average momentum of every batch normalisation layer.
        name: the model's name.
    Returns:
        keras.Model mapping (batch, size, size, 3) float images in [0, 1] to (batch, size, size, 3) float32 maps
        in [0, 1] (the final sigmoid always runs in float32, also under mixed precision).
    """
    input_size = check_input_size(input_size)
    if int(width) != width or width < 1:
        raise ValueError(f"width must be a positive integer, got {width}")
    width = int(width)

    def conv_bn_relu(x, filters, kernel, stride, prefix, suffix=""):
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                          name=f"{prefix}_conv{suffix}")(x)
        x = layers.BatchNormalization(momentum=bn_momentum, epsilon=1e-3, name=f"{prefix}_bn{suffix}")(x)
        return layers.ReLU(name=f"{prefix}_relu{suffix}")(x)

    inputs = keras.Input((input_size, input_size, 3), name="input")
    x = layers.Conv2D(width, 4, padding="same", use_bias=False, name="conv0")(inputs)
    x = layers.BatchNormalization(momentum=bn_momentum, epsilon=1e-3, name="conv0_bn")(x)
    x = layers.ReLU(name="conv0_relu")(x)

    for index, (factor, stride) in enumerate(zip(ENCODER_WIDTHS, ENCODER_STRIDES), start=1):
        prefix, channels = f"block{index}", factor * width
        shortcut = x
        if stride != 1 or x.shape[-1] != channels:
            if stride != 1:
                # a 1x1 stride-s convolution is a 1x1 convolution of every s-th pixel; taking the pixels with a
                # 1x1 pooling avoids TensorFlow 2.21's oneDNN strided 1x1 convolution, which corrupts memory on
                # CPU for fewer than 16 input channels (narrow test widths); the weights are the same
                shortcut = layers.MaxPooling2D(1, strides=stride, padding="same", name=f"{prefix}_subsample")(x)
            shortcut = layers.Conv2D(channels, 1, padding="same", use_bias=False, name=f"{prefix}_shortcut")(shortcut)
        half = max(channels // 2, 1)
        y = conv_bn_relu(x, half, 1, 1, prefix, "1")
        y = conv_bn_relu(y, half, 4, stride, prefix, "2")
        y = layers.Conv2D(channels, 1, padding="same", use_bias=False, name=f"{prefix}_conv3")(y)
        x = layers.Add(name=f"{prefix}_add")([y, shortcut])
        x = layers.BatchNormalization(momentum=bn_momentum, epsilon=1e-3, name=f"{prefix}_bn")(x)
        x = layers.ReLU(name=f"{prefix}_relu")(x)

    last = len(DECODER_WIDTHS)
    for index, (factor, stride) in enumerate(zip(DECODER_WIDTHS, DECODER_STRIDES), start=1):
        prefix = f"deconv{index}"
        channels = 3 if factor is None else factor * width
        x = layers.Conv2DTranspose(channels, 4, strides=stride, padding="same", use_bias=False, name=prefix)(x)
        x = layers.BatchNormalization(momentum=bn_momentum, epsilon=1e-3, name=f"{prefix}_bn")(x)
        if index < last:
            x = layers.ReLU(name=f"{prefix}_relu")(x)
    outputs = layers.Activation("sigmoid", dtype="float32", name="output")(x)
    return keras.Model(inputs, outputs, name=name)
