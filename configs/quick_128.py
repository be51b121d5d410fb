# Quick profile: 128 px, about 15 min for 3,000 synthetic images on 2 CPU cores (DESIGN.md: the image
# model took off at epoch 4 and reached ~97 % at epoch 23 at this size). Usage:
#   evbattery train --config configs/quick_128.py --input-type images
image_size = 128
epochs = 25
batch_size = 32
lr = 1e-3
pretrained = "auto"
