# Real-photo recipe for the image model (issue 22): a linear probe on EfficientNet-Lite2's ImageNet features at
# its own 260 px. On the real dev split it beat Lite0 at 224 px (91.0 vs 75.3 % balanced, same 3,000 synthetic
# photos, same C); for the cutout model through predicted masks Lite0 at 224 px stayed ahead (66.2 vs 57.1 %),
# so the cutout model keeps configs/real_photos_224.py. docs/benchmarks.md, "Real photos", has the numbers.
# Measured sequence:
#   evbattery data synth --out data/real224 --n-train 3000 --n-val 300 --n-test 600 --size 256 --bias 0 --seed 1
#   evbattery data synth --out data/real224m --n-train 3000 --n-val 300 --n-test 600 --size 256 --bias 0 --seed 1 \
#       --packs prismatic=0.2          # prismatic modules: dev chose them for the cutout model, not the image model
#   evbattery train --config configs/real_photos_260.py -t images --data data/real224
#   evbattery train -t masks --data data/real224m --segmenter-arch unet_efficientnet_lite0 --image-size 224 \
#       --epochs 2 --limit-train 1500 --batch-size 16
#   evbattery train --config configs/real_photos_224.py -t cutouts --data data/real224m   # needs the segmenter
#   evbattery evaluate --data data/real_photos --split test      # every model; cutouts via the segmenter
arch = "efficientnet_lite2"
pretrained = "auto"
train_layers = "head"
probe_c = 3e-4
image_size = 260
