# Accuracy profile for the README numbers: 224 px (the seed's input size), a longer schedule because
# the image model takes off later at this size (DESIGN.md: epoch 8 of 12, still climbing). Usage:
#   evbattery train --config configs/accuracy_224.py --input-type images|cutouts|masks
image_size = 224
epochs = 30
batch_size = 32
lr = 1e-3
workers = 2
pretrained = "auto"
