"""Offline training package: DSB2018 → U-Net (Keras 3) → ONNX in models/."""
