# Accuracy profile for the README numbers: 224 px (the seed's input size). Train it on many distinct
# photos, not few photos for many epochs: measured here (scripts/data_scaling_probe.py), a from-scratch
# ResNet-18 memorises 600 photos by their backgrounds (train 94 %, val 32 %) before it finds the cell,
# while on 9,000 distinct photos train and val accuracy rise together. Usage:
#   evbattery data synth --out data/accuracy --n-train 9000 --n-val 450 --n-test 900 --size 256 --bias 0
#   evbattery train --config configs/accuracy_224.py --data data/accuracy --input-type images|cutouts|masks
image_size = 224
epochs = 12
batch_size = 32
lr = 1e-3
pretrained = "auto"
